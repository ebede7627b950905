package dev.ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.guest.AccessPattern;
import dev.ferry.guest.GuestAbi;
import dev.ferry.guest.GuestLayout;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.linux.MappedMemory;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.PageHashes;
import dev.ferry.memory.UnwrittenPages;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * What the migration engine relies on, on every backend: a real guest boots, runs, pauses between two of
 * its own instructions, saves and restores into a second VM and continues there, reports exactly the pages
 * it writes, and checks its own memory.
 */
@ParameterizedClass(name = "on {0}")
@EnumSource(Backend.class)
class GuestVmTest {
    static final long MIB = 1 << 20;
    static final Duration T = Duration.ofSeconds(30);
    static GuestBackend backend;

    @Parameter
    Backend kind;

    final List<String> console = new ArrayList<>();

    @BeforeParameterizedClassInvocation
    static void open(Backend kind) {
        backend = BackendTestSupport.open(kind);
    }

    static VmConfig config(int vcpus, long ws, long rate) {
        return new VmConfig(vcpus, 64 * MIB, 2, WorkloadSpec.of(ws, rate, false).withPattern(AccessPattern.RANDOM));
    }

    GuestVm started(VmConfig c) throws Exception {
        GuestVm vm = backend.create(c, line -> {
            synchronized (console) {
                console.add(line);
            }
        });
        vm.start();
        assertTrue(probe(vm).awaitFillDone(T), "guest finished its fill");
        return vm;
    }

    static GuestProbe probe(GuestVm vm) {
        return vm.probe().orElseThrow();
    }

    /** Waits until every vCPU has reported progress a few more times: proof the guest executes. */
    static void awaitProgress(GuestVm vm) throws InterruptedException {
        long since = probe(vm).reportStats().reports();
        assertTrue(probe(vm).awaitReports(since, 5L * vm.shape().vcpus(), T), "guest keeps reporting");
    }

    static long workingSetBase(GuestVm vm) {
        VmConfig c = vm.shape().config();
        return new GuestLayout(c.memoryBytes(), c.vcpus(), c.workload()).workingSetBase();
    }

    @Test
    void bootsRunsAndSelfChecksClean() throws Exception {
        try (GuestVm vm = started(config(1, 16 * MIB, 50 * MIB))) {
            assertEquals(kind, vm.backend());
            long c1 = probe(vm).guestCounter();
            awaitProgress(vm);
            assertTrue(probe(vm).guestCounter() > c1, "counter rises");
            assertEquals(0, probe(vm).selfCheck(T));
            assertTrue(probe(vm).guestPagesWritten() >= 16 * MIB / 4096, "fill wrote every page");
            vm.throwIfFailed();
        }
        synchronized (console) {
            assertTrue(console.stream().anyMatch(l -> l.contains("fill done")), "serial console: " + console);
        }
    }

    @Test
    void pauseStopsTheGuestAndResumeContinuesIt() throws Exception {
        // An unlimited writer never stops on its own: the pause must interrupt it.
        VmConfig c = new VmConfig(2, 64 * MIB, 1, WorkloadSpec.of(8 * MIB, 0, true));
        try (GuestVm vm = started(c)) {
            vm.pause();
            long frozen = probe(vm).guestCounter();
            long written = probe(vm).guestPagesWritten();
            awaitOtherWork();
            assertEquals(frozen, probe(vm).guestCounter());
            assertEquals(written, probe(vm).guestPagesWritten());
            vm.resume();
            awaitProgress(vm);
            assertTrue(probe(vm).guestCounter() > frozen);
            assertEquals(0, probe(vm).selfCheck(T));
        }
    }

    /** Lets time pass by doing something unrelated to the guest: another guest boots and fills. */
    private void awaitOtherWork() throws Exception {
        try (GuestVm other = started(config(1, 4 * MIB, 0))) {
            awaitProgress(other);
        }
    }

    @Test
    void pauseDoesNotWaitForTheGuestToExitOnItsOwn() throws Exception {
        // Reports once a minute: after its fill the guest spins without a single exit, so only the pause
        // mechanism itself (a signal kick on KVM, the stop flag on the process backend) can stop it.
        VmConfig c = new VmConfig(1, 64 * MIB, 1, WorkloadSpec.of(4 * MIB, 0, false).withReportPeriod(Duration.ofSeconds(60)));
        CountDownLatch quiet = new CountDownLatch(1);
        try (GuestVm vm = backend.create(c, line -> {
            if (line.contains("fill done")) {
                quiet.countDown(); // the guest's last exit before it spins
            }
        })) {
            vm.start();
            assertTrue(quiet.await(30, TimeUnit.SECONDS));
            long exits = vm.vcpuExits();
            assertTimeoutPreemptively(Duration.ofSeconds(20), () -> vm.pause(),
                    "pause must not wait for the guest to exit by itself");
            assertEquals(exits, vm.vcpuExits(), "no guest exit happened: the pause mechanism did it");
            long frozen = probe(vm).guestCounter();
            assertEquals(frozen, probe(vm).guestCounter());
            vm.resume();
            vm.pause();
            assertTrue(probe(vm).guestCounter() >= frozen);
        }
    }

    @Test
    void stateAndMemoryRestoreIntoASecondVmAndTheGuestContinues() throws Exception {
        VmConfig c = config(2, 24 * MIB, 40 * MIB);
        try (GuestVm src = started(c)) {
            awaitProgress(src);
            src.pause();
            long savedCounter = probe(src).guestCounter();
            SectionSet state = src.saveState();
            long digest = src.memory().digest();

            try (GuestVm dst = backend.createForRestore(state, line -> { })) {
                copyMemory(src.memory(), dst.memory());
                assertEquals(digest, dst.memory().digest());
                dst.validateState(state);
                dst.restoreState(state);
                assertEquals(savedCounter, probe(dst).guestCounter(), "restored counter is the saved one");
                dst.start();
                awaitProgress(dst);
                assertTrue(probe(dst).guestCounter() > savedCounter, "guest continues from where it stopped");
                assertEquals(0, probe(dst).selfCheck(T), "no wrong pages after restore");
                dst.throwIfFailed();
            }
            // the source was left intact by all of this
            src.resume();
            awaitProgress(src);
            assertEquals(0, probe(src).selfCheck(T));
        }
    }

    /** An incoming VM's start is inside a migration's downtime: its threads exist, parked, before it. */
    @Test
    void anIncomingVmsThreadsWaitParkedAndItsStartWakesThem() throws Exception {
        VmConfig c = config(2, 8 * MIB, 10 * MIB);
        try (GuestVm src = started(c)) {
            awaitProgress(src);
            src.pause();
            SectionSet state = src.saveState();
            long before = liveVcpuThreads();
            try (GuestVm dst = backend.createForRestore(state, line -> { })) {
                assertEquals(before + 2, liveVcpuThreads(), "both vCPU threads exist before the start");
                assertTrue(dst.paused(), "not started yet");
                copyMemory(src.memory(), dst.memory());
                dst.restoreState(state);
                dst.pause(); // paused before its start: the start leaves it paused, as for any VM
                dst.start();
                assertTrue(dst.paused());
                dst.resume();
                awaitProgress(dst);
                assertEquals(0, probe(dst).selfCheck(T), "no wrong pages after restore");
                dst.throwIfFailed();
            }
            assertEquals(before, liveVcpuThreads(), "the threads end with the VM");
        }
    }

    private static long liveVcpuThreads() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().startsWith("vcpu-") && t.isAlive())
                .count();
    }

    @Test
    void aWordStrideWritesDataInEveryNthWordAndTheCheckCoversTheZerosBetween() throws Exception {
        WorkloadSpec quiet = WorkloadSpec.of(4 * MIB, 0, false).withWordStride(4);
        try (GuestVm vm = started(new VmConfig(1, 64 * MIB, 2, quiet))) {
            assertEquals(0, probe(vm).selfCheck(T));
            vm.pause();
            long page = workingSetBase(vm) + 9 * GuestAbi.PAGE_SIZE;
            int gen = vm.memory().getInt(GuestAbi.GEN_GPA + 9 * 4);
            for (int i = 0; i < 8; i++) {
                assertEquals(GuestAbi.pageWord(9, gen, i, 4), vm.memory().getLong(page + i * 8L), "word " + i);
            }
            assertEquals(0, vm.memory().getLong(page + 8), "word 1 is empty");
            assertTrue(vm.memory().getLong(page) != 0, "word 0 is data");
            vm.memory().putLong(page + 8, 1); // an empty word that is not empty is a wrong page
            vm.resume();
            assertEquals(1, probe(vm).selfCheck(T));
        }
    }

    @Test
    void aCorruptedPageIsCaughtByTheGuestsOwnCheck() throws Exception {
        // A quiet guest (fill once, then no writes), so nothing rewrites the page before the check.
        try (GuestVm vm = started(config(2, 16 * MIB, 0))) {
            assertEquals(0, probe(vm).selfCheck(T));
            vm.pause();
            vm.memory().putLong(workingSetBase(vm) + 5 * GuestAbi.PAGE_SIZE + 64, 0xdeadbeefL);
            vm.resume();
            assertEquals(1, probe(vm).selfCheck(T));
        }
    }

    @Test
    void restoreRefusesStateOfAnotherShapeAndAppliesNothing() throws Exception {
        try (GuestVm a = started(config(1, 8 * MIB, 0)); GuestVm b = started(config(2, 8 * MIB, 0))) {
            a.pause();
            b.pause();
            SectionSet stateOfA = a.saveState();
            SectionSet before = b.saveState();
            assertThrows(StateException.class, () -> b.validateState(stateOfA));
            assertThrows(StateException.class, () -> b.restoreState(stateOfA));
            assertEquals(before.sections().size(), b.saveState().sections().size());
            b.resume();
            awaitProgress(b);
            assertEquals(0, probe(b).selfCheck(T));
        }
    }

    @Test
    void stateOfTheOtherBackendIsRefused() throws Exception {
        try (GuestVm vm = started(config(1, 8 * MIB, 0))) {
            vm.pause();
            SectionSet state = vm.saveState();
            Backend other = kind == Backend.KVM ? Backend.PROCESS : Backend.KVM;
            assertEquals(kind, VmConfigSection.read(state).backend());
            GuestBackend foreign = new GuestBackend() {
                @Override
                public Backend kind() {
                    return other;
                }

                @Override
                public HostCapabilities capabilities() {
                    throw new AssertionError();
                }

                @Override
                public List<dev.ferry.state.SectionSchema<?>> stateSchemas() {
                    throw new AssertionError();
                }

                @Override
                public GuestVm create(VmConfig config, java.util.function.Consumer<String> c) {
                    throw new AssertionError();
                }

                @Override
                public GuestVm createIncoming(VmShape shape, java.util.function.Consumer<String> c) {
                    throw new AssertionError("must refuse before creating anything");
                }
            };
            StateException e = assertThrows(StateException.class, () -> foreign.createForRestore(state, l -> { }));
            assertTrue(e.getMessage().contains(kind.cliName()), e.getMessage());
        }
    }

    @Test
    void dirtyTrackingReportsExactlyThePagesTheGuestWrote() throws Exception {
        VmConfig c = config(1, 16 * MIB, 20 * MIB);
        try (GuestVm vm = started(c)) {
            long wsBase = workingSetBase(vm);
            long pages = c.workload().workingSetPages();
            for (int round = 0; round < 5; round++) {
                vm.dirtyTracker().enable();
                vm.pause();
                vm.dirtyTracker().fetchAndClear();
                int[] gen0 = generations(vm, pages);
                // A page the guest was in the middle of writing at the pause already has its new generation
                // but not yet its last words: it gets written in the window without a generation change.
                boolean[] midWrite = new boolean[(int) pages];
                for (int p = 0; p < pages; p++) {
                    long last = vm.memory().getLong(wsBase + p * GuestAbi.PAGE_SIZE + 511 * 8);
                    midWrite[p] = last != GuestAbi.pageWord(p, gen0[p], 511);
                }
                vm.resume();
                awaitProgress(vm);
                vm.pause();
                DirtyBitmap dirty = vm.dirtyTracker().fetchAndClear();
                int[] gen1 = generations(vm, pages);
                int written = 0;
                for (int p = 0; p < pages; p++) {
                    boolean wrote = gen0[p] != gen1[p] || midWrite[p];
                    written += wrote ? 1 : 0;
                    assertEquals(wrote, dirty.isDirty(wsBase + p * GuestAbi.PAGE_SIZE), "round " + round + ": page "
                            + p + (wrote ? " was written but not reported" : " was reported but not written"));
                }
                assertTrue(written > 10, "guest wrote pages in the window: " + written);
                // With the guest paused nothing new is dirty.
                assertEquals(0, vm.dirtyTracker().fetchAndClear().count());
                vm.resume();
            }
        }
    }

    @Test
    void unwrittenPagesOfARunningCopyMatchTheOriginalAndACorruptedOneDoesNot() throws Exception {
        try (GuestVm src = started(config(1, 16 * MIB, 20 * MIB))) {
            awaitProgress(src);
            src.pause();
            SectionSet state = src.saveState();
            PageHashes original = new PageHashes(src.memory());
            original.refreshAll();
            try (GuestVm dst = backend.createForRestore(state, line -> { })) {
                copyMemory(src.memory(), dst.memory());
                dst.restoreState(state);
                dst.dirtyTracker().enable();
                dst.start();
                awaitProgress(dst);
                UnwrittenPages u = UnwrittenPages.of(dst.memory(), dst.dirtyTracker()); // the guest keeps writing
                assertTrue(u.written().count() > 0, "the copy wrote pages after it resumed");
                assertTrue(u.matches(original), "every page it did not write is the original's");

                // A page the guest never touches (the last one, past its working set), changed behind its back:
                // through a second mapping of its memfd, which no dirty tracking sees (on the process backend
                // the guest's own mapping is tracked, and the VMM shares it).
                long gpa = dst.memory().totalPages() * GuestAbi.PAGE_SIZE - GuestAbi.PAGE_SIZE;
                assertFalse(u.written().isDirty(gpa));
                MemoryRegion r = dst.memory().regionOf(gpa);
                try (MappedMemory behind = r.mapping().alias()) {
                    long off = gpa - r.guestPhysAddr() + 8;
                    behind.pointer().setLong(off, behind.pointer().getLong(off) ^ 1);
                }
                UnwrittenPages corrupted = UnwrittenPages.of(dst.memory(), dst.dirtyTracker());
                assertFalse(corrupted.matches(original), "a changed page the guest did not write is caught");
            }
        }
    }

    @Test
    void closeReleasesEveryFdAndThreadEvenWhileRunning() throws Exception {
        int fdsBefore = openFds();
        GuestVm vm = started(config(2, 8 * MIB, 10 * MIB));
        assertNotEquals(fdsBefore, openFds());
        vm.close();
        vm.close(); // idempotent
        assertEquals(fdsBefore, openFds());
        assertFalse(Thread.getAllStackTraces().keySet().stream().anyMatch(t -> t.getName().startsWith("vcpu-") && t.isAlive()));
    }

    private static int[] generations(GuestVm vm, long pages) {
        int[] g = new int[(int) pages];
        for (int p = 0; p < pages; p++) {
            g[p] = vm.memory().getInt(GuestAbi.GEN_GPA + 4L * p);
        }
        return g;
    }

    static int openFds() {
        String[] l = new java.io.File("/proc/self/fd").list();
        return l == null ? -1 : l.length;
    }

    static void copyMemory(GuestMemory from, GuestMemory to) {
        for (MemoryRegion r : from.regions()) {
            for (long off = 0; off < r.size(); off += 8 * MIB) {
                int len = (int) Math.min(8 * MIB, r.size() - off);
                ByteBuffer dst = to.buffer(r.guestPhysAddr() + off, len);
                dst.put(from.buffer(r.guestPhysAddr() + off, len));
            }
        }
    }
}
