package dev.ferry.kvm.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.guest.AccessPattern;
import dev.ferry.guest.GuestAbi;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.kvm.sys.KvmTestSupport;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.PageHashes;
import dev.ferry.memory.UnwrittenPages;
import dev.ferry.state.SectionSet;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.VmConfig;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** A real KVM guest: boot, run, pause, save, restore into a second VM, self-check. */
class MicroVmTest {
    static final long MIB = 1 << 20;
    static final Duration T = Duration.ofSeconds(30);

    final List<String> console = new ArrayList<>();

    @BeforeEach
    void needKvm() {
        KvmTestSupport.assumeKvm();
    }

    static VmConfig config(int vcpus, long ws, long rate) {
        return new VmConfig(vcpus, 64 * MIB, 2, WorkloadSpec.of(ws, rate, false).withPattern(AccessPattern.RANDOM));
    }

    MicroVm started(VmConfig c) throws Exception {
        MicroVm vm = MicroVm.create(c, line -> {
            synchronized (console) {
                console.add(line);
            }
        });
        vm.start();
        assertTrue(vm.probe().orElseThrow().awaitFillDone(T), "guest finished its fill");
        return vm;
    }

    /** Waits until every vCPU has reported progress a few more times: proof the guest executes. */
    static void awaitProgress(GuestVm vm) throws InterruptedException {
        long since = vm.probe().orElseThrow().reportStats().reports();
        assertTrue(vm.probe().orElseThrow().awaitReports(since, 5L * vm.shape().vcpus(), T), "guest keeps reporting");
    }

    @Test
    void bootsRunsAndSelfChecksClean() throws Exception {
        try (MicroVm vm = started(config(1, 16 * MIB, 50 * MIB))) {
            long c1 = vm.probe().orElseThrow().guestCounter();
            awaitProgress(vm);
            assertTrue(vm.probe().orElseThrow().guestCounter() > c1, "counter rises");
            assertEquals(0, vm.probe().orElseThrow().selfCheck(T));
            assertTrue(vm.probe().orElseThrow().guestPagesWritten() >= 16 * MIB / 4096, "fill wrote every page");
            vm.throwIfFailed();
        }
        synchronized (console) {
            assertTrue(console.stream().anyMatch(l -> l.contains("fill done")), "serial console: " + console);
        }
    }

    @Test
    void pauseStopsTheGuestAndResumeContinuesIt() throws Exception {
        // unlimited writer spinning in ring 3: pause must kick it out of KVM_RUN
        VmConfig c = new VmConfig(2, 64 * MIB, 1, WorkloadSpec.of(8 * MIB, 0, true));
        try (MicroVm vm = started(c)) {
            vm.pause();
            long frozen = vm.probe().orElseThrow().guestCounter();
            long written = vm.probe().orElseThrow().guestPagesWritten();
            // A paused guest does not move, however long we look: compare across a self-contained wait
            // on something unrelated to the guest (another VM's progress would do; here we re-read).
            assertEquals(frozen, vm.probe().orElseThrow().guestCounter());
            assertEquals(written, vm.probe().orElseThrow().guestPagesWritten());
            vm.resume();
            awaitProgress(vm);
            assertTrue(vm.probe().orElseThrow().guestCounter() > frozen);
            assertEquals(0, vm.probe().orElseThrow().selfCheck(T));
        }
    }

    @Test
    void pauseKicksAGuestThatNeverExitsOnItsOwn() throws Exception {
        // Reports once a minute: after its fill the guest spins in ring 3 without a single exit, so
        // only the signal kick can get the vCPU out of KVM_RUN.
        VmConfig c = new VmConfig(1, 64 * MIB, 1,
                WorkloadSpec.of(4 * MIB, 0, false).withReportPeriod(Duration.ofSeconds(60)));
        java.util.concurrent.CountDownLatch quiet = new java.util.concurrent.CountDownLatch(1);
        try (MicroVm vm = MicroVm.create(c, line -> {
            if (line.contains("fill done")) {
                quiet.countDown(); // the guest's last exit before it spins
            }
        })) {
            vm.start();
            assertTrue(quiet.await(30, java.util.concurrent.TimeUnit.SECONDS));
            long exits = vm.vcpuExits();
            org.junit.jupiter.api.Assertions.assertTimeoutPreemptively(Duration.ofSeconds(20), () -> vm.pause(),
                    "pause must not wait for the guest to exit by itself");
            assertEquals(exits, vm.vcpuExits(), "no guest exit happened: the kick did it");
            long frozen = vm.probe().orElseThrow().guestCounter();
            assertEquals(frozen, vm.probe().orElseThrow().guestCounter());
            vm.resume();
            vm.pause();
            assertTrue(vm.probe().orElseThrow().guestCounter() >= frozen);
        }
    }

    @Test
    void stateAndMemoryRestoreIntoASecondVmAndTheGuestContinues() throws Exception {
        VmConfig c = config(2, 24 * MIB, 40 * MIB);
        try (MicroVm src = started(c)) {
            awaitProgress(src);
            src.pause();
            long savedCounter = src.probe().orElseThrow().guestCounter();
            SectionSet state = src.saveState();
            long digest = src.memory().digest();

            try (GuestVm dst = new KvmBackend().createForRestore(state, line -> { })) {
                copyMemory(src.memory(), dst.memory());
                assertEquals(digest, dst.memory().digest());
                dst.restoreState(state);
                assertEquals(savedCounter, dst.probe().orElseThrow().guestCounter(), "restored counter is the saved one");
                dst.start();
                awaitProgress(dst);
                assertTrue(dst.probe().orElseThrow().guestCounter() > savedCounter, "guest continues from where it stopped");
                assertEquals(0, dst.probe().orElseThrow().selfCheck(T), "no wrong pages after restore");

                dst.throwIfFailed();
            }
            // the source was left intact by all of this
            src.resume();
            awaitProgress(src);
            assertEquals(0, src.probe().orElseThrow().selfCheck(T));
        }
    }

    @Test
    void aCorruptedPageIsCaughtByTheGuestsOwnCheck() throws Exception {
        // A quiet guest (fill once, then no writes), so nothing rewrites the page before the check.
        try (MicroVm vm = started(config(2, 16 * MIB, 0))) {
            assertEquals(0, vm.probe().orElseThrow().selfCheck(T));
            vm.pause();
            vm.memory().putLong(vm.layout().workingSetBase() + 5 * GuestAbi.PAGE_SIZE + 64, 0xdeadbeefL);
            vm.resume();
            assertEquals(1, vm.probe().orElseThrow().selfCheck(T));
        }
    }

    @Test
    void aGuestWithAnUnusableParameterBlockSaysSoAndKeepsRunning() throws Exception {
        try (MicroVm vm = MicroVm.create(config(1, 8 * MIB, 0), line -> { })) {
            // A working set past the end of memory: the workload core refuses it before touching it.
            vm.memory().putLong(GuestAbi.PARAMS_GPA + GuestAbi.P_WS_BASE, 64 * MIB);
            vm.start();
            org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                    () -> vm.probe().orElseThrow().awaitFillDone(T));
            assertTrue(vm.workloadPort().badParams());
            long c = vm.probe().orElseThrow().guestCounter();
            long deadline = System.nanoTime() + T.toNanos();
            while (vm.probe().orElseThrow().guestCounter() == c && System.nanoTime() < deadline) {
                Thread.sleep(1);
            }
            assertTrue(vm.probe().orElseThrow().guestCounter() > c, "the guest still executes (it counts)");
            vm.throwIfFailed();
        }
    }

    @Test
    void restoreRefusesStateOfAnotherShapeAndAppliesNothing() throws Exception {
        try (MicroVm a = started(config(1, 8 * MIB, 0)); MicroVm b = started(config(2, 8 * MIB, 0))) {
            a.pause();
            b.pause();
            SectionSet stateOfA = a.saveState();
            SectionSet before = b.saveState();
            assertThrowsState(() -> b.restoreState(stateOfA));
            assertEquals(before.sections().size(), b.saveState().sections().size());
            b.resume();
            awaitProgress(b);
            assertEquals(0, b.probe().orElseThrow().selfCheck(T));
        }
    }

    private static void assertThrowsState(org.junit.jupiter.api.function.Executable e) {
        org.junit.jupiter.api.Assertions.assertThrows(dev.ferry.state.StateException.class, e);
    }

    @Test
    void dirtyLogReportsExactlyThePagesTheGuestWrote() throws Exception {
        VmConfig c = config(1, 16 * MIB, 20 * MIB);
        try (MicroVm vm = started(c)) {
            long wsBase = vm.layout().workingSetBase();
            long pages = c.workload().workingSetPages();
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
            awaitProgress(vm);
            vm.pause();
            var dirty = vm.dirtyTracker().fetchAndClear();
            int[] gen1 = generations(vm, pages);
            int written = 0;
            for (int p = 0; p < pages; p++) {
                boolean wrote = gen0[p] != gen1[p] || midWrite[p];
                written += wrote ? 1 : 0;
                assertEquals(wrote, dirty.isDirty(wsBase + p * GuestAbi.PAGE_SIZE),
                        "page " + p + (wrote ? " was written but not reported" : " was reported but not written"));
            }
            assertTrue(written > 10, "guest wrote pages in the window: " + written);
            // With the guest paused nothing new is dirty.
            assertEquals(0, vm.dirtyTracker().fetchAndClear().count());
        }
    }

    @Test
    void unwrittenPagesOfARunningCopyMatchTheOriginalAndACorruptedOneDoesNot() throws Exception {
        try (MicroVm src = started(config(1, 16 * MIB, 20 * MIB))) {
            awaitProgress(src);
            src.pause();
            SectionSet state = src.saveState();
            PageHashes original = new PageHashes(src.memory());
            original.refreshAll();
            try (GuestVm dst = new KvmBackend().createForRestore(state, line -> { })) {
                copyMemory(src.memory(), dst.memory());
                dst.restoreState(state);
                dst.dirtyTracker().enable();
                dst.start();
                awaitProgress(dst);
                UnwrittenPages u = UnwrittenPages.of(dst.memory(), dst.dirtyTracker()); // the guest keeps writing
                assertTrue(u.written().count() > 0, "the copy wrote pages after it resumed");
                assertTrue(u.matches(original), "every page it did not write is the original's");

                // A page the guest never touches (the last one, past its working set), changed behind its back.
                long gpa = dst.memory().totalPages() * GuestAbi.PAGE_SIZE - GuestAbi.PAGE_SIZE;
                assertFalse(u.written().isDirty(gpa));
                dst.memory().putLong(gpa + 8, dst.memory().getLong(gpa + 8) ^ 1);
                UnwrittenPages corrupted = UnwrittenPages.of(dst.memory(), dst.dirtyTracker());
                assertFalse(corrupted.matches(original), "a changed page the guest did not write is caught");
            }
        }
    }

    private static int[] generations(MicroVm vm, long pages) {
        int[] g = new int[(int) pages];
        for (int p = 0; p < pages; p++) {
            g[p] = vm.memory().getInt(GuestAbi.GEN_GPA + 4L * p);
        }
        return g;
    }

    @Test
    void closeReleasesEveryFdAndThreadEvenWhileRunning() throws Exception {
        int fdsBefore = openFds();
        MicroVm vm = started(config(2, 8 * MIB, 10 * MIB));
        assertNotEquals(fdsBefore, openFds());
        vm.close();
        vm.close(); // idempotent
        assertEquals(fdsBefore, openFds());
        assertFalse(Thread.getAllStackTraces().keySet().stream().anyMatch(t -> t.getName().startsWith("vcpu-") && t.isAlive()));
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
