package dev.ferry.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class ThreadPriorityTest {
    /** Raising needs CAP_SYS_NICE: where the test runs without it, the raise must say it did nothing. */
    private static boolean mayRaise() {
        int before = ThreadPriority.current();
        boolean ok = ThreadPriority.setCurrent(before - 1);
        ThreadPriority.setCurrent(before);
        return ok;
    }

    @Test
    void raiseLastsUntilCloseAndThenRestoresTheOldValue() {
        int before = ThreadPriority.current();
        try (ThreadPriority.Raised r = ThreadPriority.raise()) {
            if (mayRaise()) {
                assertEquals(Math.min(before, ThreadPriority.LATENCY_CRITICAL), ThreadPriority.current());
            } else {
                assertFalse(r.raised());
                assertEquals(before, ThreadPriority.current());
            }
        }
        assertEquals(before, ThreadPriority.current());
    }

    @Test
    void latencyCriticalThreadsRunRaisedFromTheStart() throws Exception {
        AtomicInteger seen = new AtomicInteger(Integer.MIN_VALUE);
        Thread t = ThreadPriority.latencyCritical("test-critical").newThread(() -> seen.set(ThreadPriority.current()));
        t.start();
        t.join();
        assertEquals(mayRaise() ? ThreadPriority.LATENCY_CRITICAL : ThreadPriority.current(), seen.get());
    }

    @Test
    void threadsStartedWhileRaisedDoNotInheritTheRaise() throws Exception {
        int before = ThreadPriority.current();
        AtomicInteger seen = new AtomicInteger(Integer.MIN_VALUE);
        boolean raised;
        try (ThreadPriority.Raised r = ThreadPriority.raise()) {
            raised = r.raised();
            Thread t = new Thread(() -> seen.set(ThreadPriority.current()));
            t.start();
            t.join();
        }
        // A raised thread's children start at nice 0 (what a guest's vCPU thread must run at); unraised, at its own.
        assertEquals(raised ? 0 : before, seen.get());
    }

    @Test
    void setProcessReachesThreadsThatAlreadyRun() throws Exception {
        CountDownLatch started = new CountDownLatch(1);
        CountDownLatch go = new CountDownLatch(1);
        AtomicInteger seen = new AtomicInteger(Integer.MIN_VALUE);
        Thread t = new Thread(() -> {
            started.countDown();
            try {
                go.await();
            } catch (InterruptedException e) {
                return;
            }
            seen.set(ThreadPriority.current());
        });
        int before = ThreadPriority.current();
        t.start();
        started.await();
        // Lowering priority needs no privilege; going back needs it where before was below 0.
        try {
            ThreadPriority.setProcess(before + 1);
            go.countDown();
            t.join();
            assertEquals(before + 1, seen.get());
        } finally {
            ThreadPriority.setProcess(before);
        }
    }
}
