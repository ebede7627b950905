package dev.ferry.guest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.jna.Memory;
import dev.ferry.devices.PortIoBus;
import dev.ferry.devices.Serial16550;
import dev.ferry.devices.WorkloadPort;
import dev.ferry.memory.GuestMemory;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The workload core as host code (libferryworkload.so), driven from Java threads the way the
 * process backend drives it: no KVM needed. Its port accesses go through the same devices the KVM
 * guest's exits reach, so the VMM side sees the same workload.
 */
class WorkloadLibraryTest {
    static final long MIB = 1 << 20;
    static final Duration T = Duration.ofSeconds(30);
    static long tscKhz;

    @BeforeAll
    static void loadLibrary() throws InterruptedException {
        WorkloadLibrary.requireLoaded();
        tscKhz = WorkloadLibrary.measureTscKhz(Duration.ofMillis(50));
        assertTrue(tscKhz > 100_000, "TSC rate " + tscKhz + " kHz");
    }

    /** A process guest: one-region guest memory, one Java thread per vCPU looping on the step function. */
    static final class ProcessGuest implements AutoCloseable {
        final GuestMemory memory;
        final long base;
        final long memBytes;
        final int vcpus;
        final WorkloadSpec spec;
        final PortIoBus bus = new PortIoBus();
        final WorkloadPort port;
        final List<String> console = new ArrayList<>();
        final Memory stopFlag = new Memory(4);
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        final List<Thread> threads = new ArrayList<>();
        // Guarded by this.
        boolean pauseRequested;
        boolean closing;
        int parked;

        /** {@code boot}: write the parameter block (a fresh guest); otherwise memory is loaded from elsewhere. */
        ProcessGuest(long memBytes, int vcpus, WorkloadSpec spec, boolean boot) {
            this.memory = GuestMemory.allocate(List.of(new GuestMemory.RegionLayout(0, 0, memBytes)));
            this.base = memory.regions().get(0).hostAddress(0);
            this.memBytes = memBytes;
            this.vcpus = vcpus;
            this.spec = spec;
            this.port = new WorkloadPort(vcpus);
            bus.attach(new Serial16550("com1", GuestAbi.PORT_COM1, l -> {
                synchronized (console) {
                    console.add(l);
                }
            }));
            bus.attach(port);
            stopFlag.setInt(0, 0);
            if (boot) {
                layout().writeParameters(memory, tscKhz);
            }
        }

        GuestLayout layout() {
            return new GuestLayout(memBytes, vcpus, spec);
        }

        void start() {
            for (int i = 0; i < vcpus; i++) {
                int cpu = i;
                Thread t = new Thread(() -> runVcpu(cpu), "process-vcpu-" + cpu);
                t.setDaemon(true);
                threads.add(t);
                t.start();
            }
        }

        /** The process backend's vCPU loop: step, serve the I/O it asks for, park between steps when paused. */
        private void runVcpu(int cpu) {
            try {
                long stop = com.sun.jna.Pointer.nativeValue(stopFlag);
                for (;;) {
                    synchronized (this) {
                        if (pauseRequested && !closing) {
                            parked++;
                            notifyAll();
                            while (pauseRequested && !closing) {
                                wait();
                            }
                            parked--;
                        }
                        if (closing) {
                            return;
                        }
                    }
                    int rc = WorkloadLibrary.step(base, memBytes, cpu, 0, stop);
                    if (rc == WorkloadLibrary.STEP_IO) {
                        WorkloadLibrary.completeIo(memory, cpu, bus);
                    } else if (rc == WorkloadLibrary.STEP_BAD) {
                        bus.write(cpu, GuestAbi.PORT_EVENT, 4, GuestAbi.EVENT_BAD_PARAMS);
                        return;
                    } else {
                        assertEquals(WorkloadLibrary.STEP_STOPPED, rc);
                    }
                }
            } catch (Throwable t) {
                failure.compareAndSet(null, t);
            }
        }

        /** Sets the stop flag and waits until every vCPU is parked between steps; returns how long that took. */
        synchronized long pause() throws InterruptedException {
            long t0 = System.nanoTime();
            pauseRequested = true;
            stopFlag.setInt(0, 1);
            while (parked < vcpus) {
                assertNull(failure.get());
                wait(1000);
                assertTrue(System.nanoTime() - t0 < T.toNanos(), "vCPUs parked");
            }
            return System.nanoTime() - t0;
        }

        synchronized void resume() {
            stopFlag.setInt(0, 0);
            pauseRequested = false;
            notifyAll();
        }

        long counter() {
            return sumStatus(GuestAbi.S_COUNTER);
        }

        long pagesWritten() {
            return sumStatus(GuestAbi.S_PAGES_WRITTEN);
        }

        long sumStatus(int field) {
            long sum = 0;
            for (int i = 0; i < vcpus; i++) {
                sum += memory.getLong(GuestAbi.statusGpa(i) + field);
            }
            return sum;
        }

        long selfCheck() throws Exception {
            return port.requestSelfCheck().get(T.toNanos(), TimeUnit.NANOSECONDS);
        }

        void awaitReports(long n) throws InterruptedException {
            long since = port.reportStats().reports();
            assertTrue(port.awaitReports(since, n, T), "the guest keeps reporting");
        }

        int[] generations() {
            int pages = (int) spec.workingSetPages();
            int[] g = new int[pages];
            for (int p = 0; p < pages; p++) {
                g[p] = memory.getInt(GuestAbi.GEN_GPA + 4L * p);
            }
            return g;
        }

        void throwIfFailed() {
            Throwable t = failure.get();
            if (t != null) {
                throw new AssertionError("vCPU thread failed", t);
            }
        }

        @Override
        public void close() throws InterruptedException {
            synchronized (this) {
                closing = true;
                stopFlag.setInt(0, 1);
                notifyAll();
            }
            for (Thread t : threads) {
                t.join(T.toMillis());
            }
            memory.close();
        }
    }

    static WorkloadSpec spec(long ws, long rate, boolean unlimited) {
        return WorkloadSpec.of(ws, rate, unlimited);
    }

    @Test
    void twoVcpusFillSelfCheckPauseAndResume() throws Exception {
        try (ProcessGuest g = new ProcessGuest(16 * MIB, 2, spec(4 * MIB, 40 * MIB, false), true)) {
            g.start();
            assertTrue(g.port.awaitFillDone(T), "both vCPUs finished their fill");
            assertTrue(g.pagesWritten() >= 1024, "fill wrote every page");
            assertEquals(0, g.selfCheck(), "no wrong page after the fill");
            synchronized (g.console) {
                assertTrue(g.console.contains("ferry-guest: working set 1024 pages on 2 vcpus"), g.console.toString());
                assertTrue(g.console.contains("ferry-guest: fill done"), g.console.toString());
            }
            g.awaitReports(10);

            long tookNanos = g.pause();
            assertTrue(tookNanos < 200_000_000L, "pause took " + tookNanos / 1000 + " us");
            for (int i = 0; i < 2; i++) {
                long s = GuestAbi.vcpuStateGpa(i);
                assertEquals(GuestAbi.STAGE_RUNNING, g.memory.getLong(s + GuestAbi.V_STAGE));
                assertEquals(0, g.memory.getLong(s + GuestAbi.V_IO_PENDING), "no request owed at a pause");
            }
            long frozen = g.counter();
            long written = g.pagesWritten();
            int[] gen0 = g.generations();
            Thread.sleep(50);
            assertEquals(frozen, g.counter(), "a paused guest does not run");
            assertEquals(written, g.pagesWritten());

            g.resume();
            g.awaitReports(20);
            assertTrue(g.counter() > frozen, "the counter keeps rising");
            assertTrue(g.pagesWritten() > written, "the guest keeps writing");
            g.pause();
            int[] gen1 = g.generations();
            int advanced = 0;
            for (int p = 0; p < gen0.length; p++) {
                assertTrue(Integer.compareUnsigned(gen1[p], gen0[p]) >= 0, "page " + p + " went back a generation");
                advanced += gen1[p] != gen0[p] ? 1 : 0;
            }
            assertTrue(advanced > 0, "pages were rewritten after the resume");
            g.resume();
            assertEquals(0, g.selfCheck(), "no wrong page after pause and resume");
            g.throwIfFailed();
        }
    }

    @Test
    void pausedMemoryIsTheWholeStateAndACopyRunsOn() throws Exception {
        WorkloadSpec s = spec(4 * MIB, 40 * MIB, false).withPattern(AccessPattern.HOT_COLD);
        try (ProcessGuest src = new ProcessGuest(16 * MIB, 2, s, true)) {
            src.start();
            assertTrue(src.port.awaitFillDone(T));
            src.awaitReports(10);
            src.pause();
            long saved = src.counter();
            int[] gen0 = src.generations();
            try (ProcessGuest dst = new ProcessGuest(16 * MIB, 2, s, false)) {
                ByteBuffer to = dst.memory.buffer(0, (int) (16 * MIB));
                to.put(src.memory.buffer(0, (int) (16 * MIB)));
                assertEquals(saved, dst.counter());
                dst.start();
                dst.awaitReports(20);
                assertTrue(dst.counter() > saved, "the copy continues from the saved counter");
                assertEquals(0, dst.selfCheck(), "the copy's working set is whole");
                dst.pause();
                int[] gen1 = dst.generations();
                for (int p = 0; p < gen0.length; p++) {
                    assertTrue(Integer.compareUnsigned(gen1[p], gen0[p]) >= 0, "page " + p + " went back a generation");
                }
                synchronized (dst.console) {
                    assertTrue(dst.console.isEmpty(), "the copy did not start over: " + dst.console);
                }
                dst.throwIfFailed();
            }
            src.resume();
            assertEquals(0, src.selfCheck());
            src.throwIfFailed();
        }
    }

    @Test
    void pausingAtAnyMomentLosesNothing() throws Exception {
        // A working set big enough that fill and self-check take many report periods, paused over
        // and over at arbitrary points: the state block must carry fill, check and loop positions.
        WorkloadSpec s = spec(32 * MIB, 0, true).withPattern(AccessPattern.SEQUENTIAL);
        try (ProcessGuest g = new ProcessGuest(48 * MIB, 2, s, true)) {
            g.start();
            SplittableRandom rnd = new SplittableRandom(7);
            var check = new Object() {
                java.util.concurrent.CompletableFuture<Long> f;
            };
            long maxPauseNanos = 0;
            for (int i = 0; i < 300; i++) {
                Thread.sleep(0, rnd.nextInt(1, 999_999));
                maxPauseNanos = Math.max(maxPauseNanos, g.pause());
                g.resume();
                if (i == 150) {
                    check.f = g.port.requestSelfCheck(); // paused and resumed mid-check too
                }
            }
            assertTrue(g.port.awaitFillDone(T));
            assertEquals(0L, check.f.get(T.toNanos(), TimeUnit.NANOSECONDS));
            assertEquals(0, g.selfCheck());
            System.out.printf("process guest: 300 pauses, longest %d us%n", maxPauseNanos / 1000);
            g.throwIfFailed();
        }
    }

    @Test
    void aCorruptedPageIsCaughtByTheNextSelfCheck() throws Exception {
        // Quiet: fill once, then no writes, so nothing rewrites the corrupted page before the check.
        try (ProcessGuest g = new ProcessGuest(16 * MIB, 2, spec(4 * MIB, 0, false), true)) {
            g.start();
            assertTrue(g.port.awaitFillDone(T));
            assertEquals(0, g.selfCheck());
            g.pause();
            long gpa = g.layout().workingSetBase() + 700 * GuestAbi.PAGE_SIZE + 64; // vCPU 1's slice
            g.memory.putLong(gpa, g.memory.getLong(gpa) ^ 0x10);
            g.resume();
            assertEquals(1, g.selfCheck());
            assertEquals(1, g.port.lastCheckWrong());
            g.throwIfFailed();
        }
    }

    // ---- Garbage in guest memory: the step refuses it and never touches memory outside the guest's.

    /** A one-vCPU guest driven from the test thread: stepped through its fill, then stopped in its loop. */
    static ProcessGuest runningGuest() throws Exception {
        ProcessGuest g = new ProcessGuest(8 * MIB, 1, spec(MIB, 20 * MIB, false), true);
        for (int i = 0; i < 10_000 && !g.port.awaitFillDone(Duration.ZERO); i++) {
            assertEquals(WorkloadLibrary.STEP_IO, stepOnce(g));
            WorkloadLibrary.completeIo(g.memory, 0, g.bus);
        }
        assertTrue(g.port.awaitFillDone(Duration.ZERO));
        g.stopFlag.setInt(0, 1); // from here on a step returns at its loop's first stop check
        int rc;
        while ((rc = stepOnce(g)) == WorkloadLibrary.STEP_IO) {
            WorkloadLibrary.completeIo(g.memory, 0, g.bus); // the rest of "fill done" on the console
        }
        assertEquals(WorkloadLibrary.STEP_STOPPED, rc);
        assertEquals(GuestAbi.STAGE_RUNNING, g.memory.getLong(GuestAbi.vcpuStateGpa(0) + GuestAbi.V_STAGE));
        synchronized (g.console) {
            assertEquals(List.of("ferry-guest: working set 256 pages on 1 vcpus", "ferry-guest: fill done"), g.console);
        }
        return g;
    }

    static int stepOnce(ProcessGuest g) {
        return WorkloadLibrary.step(g.base, g.memBytes, 0, 0, com.sun.jna.Pointer.nativeValue(g.stopFlag));
    }

    @Test
    void aFreshGuestSaysItStartedAndABlankOneIsBad() throws Exception {
        try (ProcessGuest g = new ProcessGuest(8 * MIB, 1, spec(MIB, 0, false), false)) {
            assertEquals(WorkloadLibrary.STEP_BAD, stepOnce(g), "no parameter block at all");
            g.layout().writeParameters(g.memory, tscKhz);
            assertEquals(WorkloadLibrary.STEP_IO, stepOnce(g));
            long s = GuestAbi.vcpuStateGpa(0);
            assertEquals(1, g.memory.getLong(s + GuestAbi.V_IO_PENDING));
            assertEquals(GuestAbi.PORT_EVENT, g.memory.getLong(s + GuestAbi.V_IO_PORT));
            assertEquals(4, g.memory.getLong(s + GuestAbi.V_IO_SIZE));
            assertEquals(GuestAbi.IO_OUT, g.memory.getLong(s + GuestAbi.V_IO_DIR));
            assertEquals(GuestAbi.EVENT_STARTED, g.memory.getLong(s + GuestAbi.V_IO_VALUE));
            assertEquals(WorkloadLibrary.STEP_IO, stepOnce(g), "an owed request is returned again, not skipped");
            assertEquals(GuestAbi.EVENT_STARTED, g.memory.getLong(s + GuestAbi.V_IO_VALUE));
        }
    }

    @Test
    void garbageInTheParameterBlockIsBad() throws Exception {
        try (ProcessGuest g = runningGuest()) {
            long p = GuestAbi.PARAMS_GPA;
            long wsPages = g.spec.workingSetPages();
            long[][] bad = {
                {GuestAbi.P_MAGIC, 0}, {GuestAbi.P_VERSION, 1}, {GuestAbi.P_VERSION, 3},
                {GuestAbi.P_VCPUS, 0}, {GuestAbi.P_VCPUS, 65}, {GuestAbi.P_VCPUS, -1},
                {GuestAbi.P_WS_PAGES, 0}, {GuestAbi.P_WS_PAGES, g.memBytes / 4096 + 1}, {GuestAbi.P_WS_PAGES, -1},
                {GuestAbi.P_WS_PAGES, Long.MIN_VALUE}, {GuestAbi.P_WS_PAGES, 1L << 52},
                {GuestAbi.P_WS_BASE, 8}, {GuestAbi.P_WS_BASE, g.memBytes}, {GuestAbi.P_WS_BASE, -4096},
                {GuestAbi.P_WS_BASE, g.memBytes - (wsPages - 1) * 4096}, {GuestAbi.P_WS_BASE, 1L << 62},
                {GuestAbi.P_GEN_BASE, 2}, {GuestAbi.P_GEN_BASE, -4}, {GuestAbi.P_GEN_BASE, g.memBytes - wsPages * 4 + 4},
            };
            for (long[] b : bad) {
                long good = g.memory.getLong(p + b[0]);
                g.memory.putLong(p + b[0], b[1]);
                assertEquals(WorkloadLibrary.STEP_BAD, stepOnce(g), "param at " + b[0] + " = " + b[1]);
                g.memory.putLong(p + b[0], good);
                assertEquals(WorkloadLibrary.STEP_STOPPED, stepOnce(g), "good again after param " + b[0]);
            }
            // The caller's own arguments are checked too.
            long stop = com.sun.jna.Pointer.nativeValue(g.stopFlag);
            assertEquals(WorkloadLibrary.STEP_BAD, WorkloadLibrary.step(g.base, g.memBytes, 1, 0, stop), "cpu >= vcpus");
            assertEquals(WorkloadLibrary.STEP_BAD, WorkloadLibrary.step(g.base, g.memBytes, 64, 0, stop));
            assertEquals(WorkloadLibrary.STEP_BAD, WorkloadLibrary.step(g.base, g.memBytes, -1, 0, stop));
            assertEquals(WorkloadLibrary.STEP_BAD, WorkloadLibrary.step(g.base, 0x1000, 0, 0, stop), "memory too small");
            assertEquals(WorkloadLibrary.STEP_BAD, WorkloadLibrary.step(g.base, MIB, 0, 0, stop), "working set outside memory");

            // Random values in every parameter, many times: BAD or a normal return, never a crash.
            SplittableRandom rnd = new SplittableRandom(42);
            for (int i = 0; i < 20_000; i++) {
                int off = 8 * rnd.nextInt(GuestAbi.P_END / 8);
                long good = g.memory.getLong(p + off);
                g.memory.putLong(p + off, randomValue(rnd, g.memBytes));
                int rc = stepOnce(g);
                assertTrue(rc >= WorkloadLibrary.STEP_IO && rc <= WorkloadLibrary.STEP_BAD, "rc " + rc);
                g.memory.putLong(p + off, good);
                WorkloadLibrary.completeIo(g.memory, 0, g.bus);
            }
            // All of it random at once.
            for (int i = 0; i < 2_000; i++) {
                for (int off = 0; off < GuestAbi.P_END; off += 8) {
                    g.memory.putLong(p + off, rnd.nextLong());
                }
                assertEquals(WorkloadLibrary.STEP_BAD, stepOnce(g));
            }
        }
    }

    @Test
    void garbageInTheStateBlockIsBad() throws Exception {
        try (ProcessGuest g = runningGuest()) {
            long s = GuestAbi.vcpuStateGpa(0);
            long pages = g.spec.workingSetPages();
            byte[] good = g.memory.read(s, (int) GuestAbi.VCPU_STATE_STRIDE);
            long[][] bad = {
                {GuestAbi.V_STAGE, 3}, {GuestAbi.V_STAGE, -1},
                {GuestAbi.V_RESUME, GuestAbi.RESUME_COUNT}, {GuestAbi.V_RESUME, -1},
                {GuestAbi.V_FILL_POS, pages + 1}, {GuestAbi.V_FILL_POS, -1},
                {GuestAbi.V_SEQ, pages}, {GuestAbi.V_SEQ, -1}, {GuestAbi.V_RNG, 0},
                {GuestAbi.V_CHECK_POS, pages + 1}, {GuestAbi.V_CHECK_POS, Long.MIN_VALUE},
                {GuestAbi.V_CON_LEN, GuestAbi.CON_MAX + 1}, {GuestAbi.V_CON_LEN, -1}, {GuestAbi.V_CON_LEN, 0},
                {GuestAbi.V_CON_POS, GuestAbi.CON_MAX + 1}, {GuestAbi.V_CON_POS, -1},
                {GuestAbi.V_IO_PENDING, 2}, {GuestAbi.V_IO_PENDING, -1},
            };
            for (long[] b : bad) {
                g.memory.putLong(s + b[0], b[1]);
                assertEquals(WorkloadLibrary.STEP_BAD, stepOnce(g), "state at " + b[0] + " = " + b[1]);
                g.memory.write(s, good);
                assertEquals(WorkloadLibrary.STEP_STOPPED, stepOnce(g), "good again after state " + b[0]);
            }
            // An owed request must be one a caller can make.
            long[][] badIo = {{GuestAbi.V_IO_SIZE, 3}, {GuestAbi.V_IO_SIZE, 8}, {GuestAbi.V_IO_DIR, 2},
                {GuestAbi.V_IO_PORT, 0x10000}, {GuestAbi.V_IO_PORT, -1}};
            for (long[] b : badIo) {
                g.memory.putLong(s + GuestAbi.V_IO_PENDING, 1);
                g.memory.putLong(s + GuestAbi.V_IO_PORT, GuestAbi.PORT_PROGRESS);
                g.memory.putLong(s + GuestAbi.V_IO_SIZE, 4);
                g.memory.putLong(s + GuestAbi.V_IO_DIR, GuestAbi.IO_IN);
                assertEquals(WorkloadLibrary.STEP_IO, stepOnce(g));
                g.memory.putLong(s + b[0], b[1]);
                assertEquals(WorkloadLibrary.STEP_BAD, stepOnce(g), "request field " + b[0] + " = " + b[1]);
                g.memory.write(s, good);
            }

            // Random values in every field of a running block: BAD or a normal return, never a crash.
            SplittableRandom rnd = new SplittableRandom(43);
            int badCount = 0;
            for (int i = 0; i < 20_000; i++) {
                int off = 8 * rnd.nextInt((int) (GuestAbi.V_END / 8));
                g.memory.putLong(s + off, randomValue(rnd, pages * 4096));
                int rc = stepOnce(g);
                assertTrue(rc >= WorkloadLibrary.STEP_IO && rc <= WorkloadLibrary.STEP_BAD, "rc " + rc);
                badCount += rc == WorkloadLibrary.STEP_BAD ? 1 : 0;
                g.memory.write(s, good);
            }
            assertNotEquals(0, badCount);
            // A whole block of junk behind a valid stage.
            for (int i = 0; i < 2_000; i++) {
                byte[] junk = new byte[(int) GuestAbi.VCPU_STATE_STRIDE];
                rnd.nextBytes(junk);
                g.memory.write(s, junk);
                g.memory.putLong(s + GuestAbi.V_STAGE, rnd.nextInt(3));
                int rc = stepOnce(g);
                assertTrue(rc >= WorkloadLibrary.STEP_IO && rc <= WorkloadLibrary.STEP_BAD, "rc " + rc);
            }
            g.memory.write(s, good);
            g.stopFlag.setInt(0, 0);
            g.start();
            g.awaitReports(5);
            assertEquals(0, g.selfCheck(), "the restored good block runs on with a whole working set");
            g.throwIfFailed();
        }
    }

    /** Mostly values near the interesting edges (small, near the sizes, near the top), some fully random. */
    private static long randomValue(SplittableRandom rnd, long scale) {
        return switch (rnd.nextInt(5)) {
            case 0 -> rnd.nextLong(0, 256);
            case 1 -> scale + rnd.nextLong(-64, 64);
            case 2 -> -rnd.nextLong(1, 1 << 16);
            case 3 -> rnd.nextLong(0, Math.max(1, scale / 4096)) ;
            default -> rnd.nextLong();
        };
    }
}
