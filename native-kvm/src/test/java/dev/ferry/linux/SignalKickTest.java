package dev.ferry.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import dev.ferry.kvm.sys.KvmIoctls;
import dev.ferry.kvm.sys.KvmSignalMask;
import dev.ferry.kvm.sys.KvmSystem;
import dev.ferry.kvm.sys.KvmTestSupport;
import dev.ferry.kvm.sys.KvmVcpu;
import dev.ferry.kvm.sys.KvmVm;

/**
 * The vCPU kick scheme of {@link Signals}: a thread-directed real-time signal that is blocked on
 * the target thread stays pending (no handler, process not killed), is consumed with
 * sigtimedwait, and — with KVM_SET_SIGNAL_MASK — makes KVM_RUN return EINTR.
 *
 * <p>Each scenario runs on a fresh thread, so the JUnit thread's signal mask is never changed.
 */
class SignalKickTest {
    static final int KICK = Signals.KICK_SIGNAL;

    @Test
    void kickSignalNumberComesFromGlibc() {
        assertEquals(LibC.__libc_current_sigrtmin() + 6, KICK);
        assertTrue(KICK > 32 && KICK <= Signals.SIGRTMAX, "kick signal " + KICK);
        assertEquals(1L << (KICK - 1), Signals.kernelSigsetBits(KICK));
        assertEquals(0b101L, Signals.kernelSigsetBits(1, 3));
    }

    @Test
    void blockedKickStaysPendingUntilConsumed() throws Exception {
        BlockingQueue<Integer> tid = new LinkedBlockingQueue<>();
        CountDownLatch kicked = new CountDownLatch(1);
        List<Object> seen = onThread(() -> {
            List<Object> r = new ArrayList<>();
            Signals.blockOnCurrentThread(KICK);
            r.add(Signals.isBlockedOnCurrentThread(KICK));
            r.add(Signals.consumePending(KICK)); // nothing pending yet
            tid.add(Signals.currentThreadId());
            await(kicked);
            r.add(waitPending(KICK));
            r.add(Signals.consumePending(KICK));
            r.add(Signals.consumePending(KICK));
            r.add(Signals.isPending(KICK));
            return r;
        }, () -> {
            int t = take(tid);
            assertTrue(t != LibC.gettid(), "kick goes to the other thread");
            Signals.kick(t, KICK);
            kicked.countDown();
        });
        assertEquals(List.of(true, false, true, true, false, false), seen);
    }

    @Test
    void kicksQueueAndDrain() throws Exception {
        BlockingQueue<Integer> tid = new LinkedBlockingQueue<>();
        CountDownLatch kicked = new CountDownLatch(1);
        List<Object> seen = onThread(() -> {
            Signals.blockOnCurrentThread(KICK);
            tid.add(Signals.currentThreadId());
            await(kicked);
            waitPending(KICK);
            return List.of(Signals.drainPending(KICK), Signals.consumePending(KICK));
        }, () -> {
            int t = take(tid);
            for (int i = 0; i < 3; i++) {
                Signals.kick(t, KICK); // real-time signals queue rather than merge
            }
            kicked.countDown();
        });
        assertEquals(List.of(3, false), seen);
    }

    @Test
    void kickingAThreadThatIsGoneIsESRCH() throws Exception {
        AtomicReference<Integer> tid = new AtomicReference<>();
        Thread t = new Thread(() -> {
            // Blocked, so even a kick racing with the exit can never hit the default action
            // (terminating the whole JVM): exactly the discipline vCPU threads must follow.
            Signals.blockOnCurrentThread(KICK);
            tid.set(Signals.currentThreadId());
        });
        t.start();
        t.join();
        // Thread.join returns before the OS thread is reaped: wait for the kernel task to vanish.
        Path task = Path.of("/proc/self/task/" + tid.get());
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (Files.exists(task) && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertFalse(Files.exists(task), "thread " + tid.get() + " did not exit");
        NativeException e = null;
        try {
            Signals.kick(tid.get(), KICK);
        } catch (NativeException ex) {
            e = ex;
        }
        assertTrue(e != null && e.errno() == Errno.ESRCH, "expected ESRCH, got " + e);
    }

    @Test
    void kickTargetStopsKickingOnceRetired() throws Exception {
        BlockingQueue<KickTarget> target = new LinkedBlockingQueue<>();
        CountDownLatch kicked = new CountDownLatch(1);
        CountDownLatch retired = new CountDownLatch(1);
        List<Object> seen = onThread(() -> {
            KickTarget me = KickTarget.forCurrentThread(KICK);
            target.add(me);
            await(kicked);
            boolean pending = waitPending(KICK);
            me.retire(); // drains the pending kick
            boolean pendingAfterRetire = Signals.isPending(KICK);
            retired.countDown();
            return List.of(me.tid() == Signals.currentThreadId(), pending, pendingAfterRetire);
        }, () -> {
            KickTarget t = target.poll(10, TimeUnit.SECONDS);
            assertTrue(t.kick());
            kicked.countDown();
            await(retired);
            assertTrue(t.isRetired());
            assertFalse(t.kick(), "a retired target must never be signalled");
        });
        assertEquals(List.of(true, true, false), seen);
    }

    /**
     * The KVM half: with the kick unblocked only inside KVM_RUN, a kick that arrives before the
     * call makes KVM_RUN return EINTR without entering the guest, and the signal is left pending
     * (blocked again) for sigtimedwait. Without the run mask the same KVM_RUN would not see it.
     */
    @Test
    void kickedVcpuLeavesKvmRunWithEintr() throws Exception {
        KvmTestSupport.assumeKvm();
        try (KvmSystem kvm = KvmSystem.open(); KvmVm vm = kvm.createVm();
                MappedMemory ram = MappedMemory.createShared("kick-ram", 2 << 20)) {
            vm.createIrqchip();
            // a memory slot matters: with none, PVM's shadow MMU has no page budget and KVM_RUN
            // fails with ENOSPC before it looks at pending signals
            vm.setUserMemoryRegion(0, 0, 0, ram.size(), ram.address());
            try (KvmVcpu vcpu = vm.createVcpu(0)) {
                BlockingQueue<Integer> tid = new LinkedBlockingQueue<>();
                CountDownLatch kicked = new CountDownLatch(1);
                List<Object> seen = onThread(() -> {
                    Signals.blockOnCurrentThread(KICK);
                    vcpu.setSignalMask(KICK);
                    tid.add(Signals.currentThreadId());
                    await(kicked);
                    waitPending(KICK);
                    int rc = vcpu.runOnce();
                    boolean stillBlocked = Signals.isBlockedOnCurrentThread(KICK);
                    boolean pendingAfter = Signals.isPending(KICK);
                    boolean consumed = Signals.consumePending(KICK);
                    return List.of(rc, stillBlocked, pendingAfter, consumed, Signals.isPending(KICK));
                }, () -> {
                    Signals.kick(take(tid), KICK);
                    kicked.countDown();
                });
                assertEquals(List.of(-Errno.EINTR, true, true, true, false), seen);

                // the run mask really is what KVM_RUN uses: pending kick + empty run mask → EINTR too,
                // and setSignalMask() with no arguments keeps the kick blocked (no EINTR from it)
                seen = onThread(() -> {
                    Signals.blockOnCurrentThread(KICK);
                    vcpu.setRunSignalMask(0);
                    Signals.kick(Signals.currentThreadId(), KICK);
                    int rc = vcpu.runOnce();
                    Signals.drainPending(KICK);
                    vcpu.setSignalMask();
                    long runMask = Signals.currentThreadMask();
                    return List.of(rc, (runMask & Signals.kernelSigsetBits(KICK)) != 0);
                }, () -> {});
                assertEquals(List.of(-Errno.EINTR, true), seen);

                // immediate_exit is the other, signal-free way out (KVM_CAP_IMMEDIATE_EXIT)
                if (kvm.checkExtension(KvmIoctls.KVM_CAP_IMMEDIATE_EXIT) > 0) {
                    vcpu.run().setImmediateExit(true);
                    assertEquals(-Errno.EINTR, vcpu.runOnce());
                    vcpu.run().setImmediateExit(false);
                }
                vcpu.clearSignalMask();
            }
        }
    }

    @Test
    void runSignalMaskIsTheThreadMaskMinusTheKick() throws Exception {
        List<Object> seen = onThread(() -> {
            Signals.blockOnCurrentThread(KICK);
            Signals.blockOnCurrentThread(LibC.SIGUSR1);
            long mask = Signals.currentThreadMask();
            long run = mask & ~Signals.kernelSigsetBits(KICK);
            return List.of((mask & Signals.kernelSigsetBits(KICK, LibC.SIGUSR1)) == Signals.kernelSigsetBits(KICK, LibC.SIGUSR1),
                    (run & Signals.kernelSigsetBits(KICK)) == 0,
                    (run & Signals.kernelSigsetBits(LibC.SIGUSR1)) != 0,
                    new KvmSignalMask(run).bits() == run);
        }, () -> {});
        assertEquals(List.of(true, true, true, true), seen);
    }

    // ---- helpers ---------------------------------------------------------------------------------

    interface Body {
        List<Object> run() throws Exception;
    }

    interface Driver {
        void run() throws Exception;
    }

    /** Runs {@code body} on a new thread while {@code driver} runs on this one; returns body's result. */
    private static List<Object> onThread(Body body, Driver driver) throws Exception {
        AtomicReference<List<Object>> result = new AtomicReference<>();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread t = new Thread(() -> {
            try {
                result.set(body.run());
            } catch (Throwable e) {
                failure.set(e);
            }
        }, "kick-target");
        t.start();
        try {
            driver.run();
        } finally {
            t.join(TimeUnit.SECONDS.toMillis(10));
        }
        assertFalse(t.isAlive(), "target thread did not finish");
        if (failure.get() != null) {
            throw new AssertionError("target thread failed", failure.get());
        }
        return result.get();
    }

    private static boolean waitPending(int sig) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (!Signals.isPending(sig)) {
            if (System.nanoTime() > deadline) {
                return false;
            }
            Thread.sleep(1);
        }
        return true;
    }

    private static void await(CountDownLatch latch) throws InterruptedException {
        assertTrue(latch.await(10, TimeUnit.SECONDS), "timed out");
    }

    private static int take(BlockingQueue<Integer> q) throws InterruptedException {
        Integer v = q.poll(10, TimeUnit.SECONDS);
        assertTrue(v != null, "target thread did not report its tid");
        return v;
    }
}
