package dev.ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.guest.WorkloadSpec;
import dev.ferry.backends.BackendTestSupport;
import dev.ferry.state.StateException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/** Snapshots on disk: a running guest saved, restored in a new VM, and continuing correctly. */
@ParameterizedClass(name = "on {0}")
@EnumSource(Backend.class)
class SnapshotTest {
    static final long MIB = 1 << 20;
    static final Duration T = Duration.ofSeconds(30);
    static GuestBackend backend;

    @Parameter
    Backend kind;

    @TempDir
    Path dir;

    @BeforeParameterizedClassInvocation
    static void open(Backend kind) {
        backend = BackendTestSupport.open(kind);
    }

    private long snapshotRunningGuest() throws Exception {
        VmConfig c = new VmConfig(2, 64 * MIB, 2, WorkloadSpec.of(16 * MIB, 30 * MIB, false));
        try (GuestVm vm = backend.create(c, l -> { })) {
            vm.start();
            assertTrue(vm.probe().orElseThrow().awaitFillDone(T));
            long r = vm.probe().orElseThrow().reportStats().reports();
            assertTrue(vm.probe().orElseThrow().awaitReports(r, 10, T));
            vm.pause();
            Snapshot.write(vm, dir);
            assertEquals(kind, Snapshot.backendOf(dir));
            return vm.probe().orElseThrow().guestCounter();
        }
    }

    @Test
    void restoredSnapshotContinuesWhereTheGuestStopped() throws Exception {
        long saved = snapshotRunningGuest();
        try (GuestVm vm = Snapshot.restore(dir, backend, l -> { })) {
            assertEquals(saved, vm.probe().orElseThrow().guestCounter());
            vm.start();
            long r = vm.probe().orElseThrow().reportStats().reports();
            assertTrue(vm.probe().orElseThrow().awaitReports(r, 10, T));
            assertTrue(vm.probe().orElseThrow().guestCounter() > saved);
            assertEquals(0, vm.probe().orElseThrow().selfCheck(T));
        }
    }

    @Test
    void corruptedMemoryIsRefusedBeforeTheGuestRuns() throws Exception {
        snapshotRunningGuest();
        try (RandomAccessFile f = new RandomAccessFile(dir.resolve(Snapshot.MEMORY_FILE).toFile(), "rw")) {
            f.seek(40 * MIB + 123);
            int b = f.read();
            f.seek(40 * MIB + 123);
            f.write(b ^ 0x10);
        }
        StateException e = assertThrows(StateException.class, () -> Snapshot.restore(dir, backend, l -> { }));
        assertTrue(e.getMessage().contains("digest"), e.getMessage());
    }

    @Test
    void truncatedStateIsRefused() throws Exception {
        snapshotRunningGuest();
        Path state = dir.resolve(Snapshot.STATE_FILE);
        byte[] all = Files.readAllBytes(state);
        Files.write(state, java.util.Arrays.copyOf(all, all.length - 7));
        assertThrows(StateException.class, () -> Snapshot.restore(dir, backend, l -> { }));
    }
}
