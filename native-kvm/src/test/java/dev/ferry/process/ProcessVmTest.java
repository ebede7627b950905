package dev.ferry.process;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.guest.GuestAbi;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.vm.Backend;
import dev.ferry.vm.GuestBackend;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.VmConfig;
import dev.ferry.vm.VmFailure;
import dev.ferry.vm.VmShape;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/** What only a process guest does; what every backend does is in {@link dev.ferry.vm.GuestVmTest}. */
class ProcessVmTest {
    static final long MIB = 1 << 20;
    static final Duration T = Duration.ofSeconds(30);

    static VmConfig config(long ws) {
        return new VmConfig(1, 64 * MIB, 2, WorkloadSpec.of(ws, 0, false));
    }

    @Test
    void aGuestWithAnUnusableParameterBlockStopsWithAClearFailureInsteadOfCrashingTheAgent() throws Exception {
        GuestBackend backend = BackendTestSupport.open(Backend.PROCESS);
        try (GuestVm vm = backend.create(config(8 * MIB), line -> { })) {
            // A working set past the end of memory: in a host thread, touching it would crash the JVM.
            vm.memory().putLong(GuestAbi.PARAMS_GPA + GuestAbi.P_WS_BASE, 64 * MIB);
            vm.start();
            assertThrows(IllegalStateException.class, () -> vm.probe().orElseThrow().awaitFillDone(T),
                    "the workload port heard of the bad parameters");
            vm.pause(); // returns: the failed vCPU stopped
            assertNotNull(vm.failure());
            VmFailure f = assertThrows(VmFailure.class, vm::throwIfFailed);
            assertTrue(f.getMessage().contains("out of range"), f.getMessage());
        }
    }

    private static long pagemapFds() throws java.io.IOException {
        try (var fds = java.nio.file.Files.list(java.nio.file.Path.of("/proc/self/fd"))) {
            return fds.filter(fd -> {
                try {
                    return java.nio.file.Files.readSymbolicLink(fd).toString().endsWith("/pagemap");
                } catch (java.io.IOException e) {
                    return false; // closed meanwhile (e.g. the listing's own fd)
                }
            }).count();
        }
    }

    @Test
    void closingAVmClosesItsWriteTrackersPagemapFd() throws Exception {
        // Regression: every VM whose writes were tracked (each migration's source and destination) left its
        // /proc/self/pagemap fd open after close; `ferry soak` saw the agents' fds grow by one per migration.
        GuestBackend backend = BackendTestSupport.open(Backend.PROCESS);
        long before = pagemapFds();
        for (int i = 0; i < 3; i++) {
            try (GuestVm vm = backend.create(config(4 * MIB), line -> { })) {
                vm.start();
                vm.dirtyTracker().enable();
                vm.dirtyTracker().fetchAndClear();
                if (i == 1) {
                    vm.dirtyTracker().disable(); // disabled before the close, or (i = 0, 2) still on
                }
            }
        }
        assertEquals(before, pagemapFds(), "no pagemap fd outlives its VM");
    }

    @Test
    void itsShapeHasNoCpuidAndTheHostsTscRate() {
        GuestBackend backend = BackendTestSupport.open(Backend.PROCESS);
        try (GuestVm vm = backend.create(config(4 * MIB), line -> { })) {
            VmShape shape = vm.shape();
            assertTrue(shape.cpuid().isEmpty(), "plain x86-64 code: no CPU model to carry");
            assertEquals(backend.capabilities().tsc().khz(), shape.tscKhz());
            assertTrue(shape.tscKhz() > 100_000, "measured TSC rate: " + shape.tscKhz());
            assertTrue(!backend.capabilities().tsc().scalable() && backend.capabilities().postcopy());
        }
    }
}
