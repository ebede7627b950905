package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.vm.Pausable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** The throttle pauses and resumes the vCPUs in turn, and closing it always leaves them running. */
class GuestThrottleTest {
    /** vCPUs that count what the throttle does to them. */
    private static final class CountingVcpus implements Pausable {
        final AtomicInteger pauses = new AtomicInteger();
        final AtomicInteger resumes = new AtomicInteger();
        final CountDownLatch threeCycles = new CountDownLatch(3);
        volatile boolean paused;

        @Override
        public void start() {}

        @Override
        public void pause() {
            assertFalse(paused, "paused twice in a row");
            paused = true;
            pauses.incrementAndGet();
        }

        @Override
        public void resume() {
            assertTrue(paused, "resumed while running");
            paused = false;
            resumes.incrementAndGet();
            threeCycles.countDown();
        }

        @Override
        public boolean paused() {
            return paused;
        }
    }

    @Test
    void itCyclesWhileSetAndClosingLeavesTheGuestRunning() throws Exception {
        CountingVcpus vcpus = new CountingVcpus();
        GuestThrottle t = new GuestThrottle(vcpus, "test");
        t.set(0);
        assertEquals(0, vcpus.pauses.get(), "0 % does not touch the vCPUs");
        t.set(90); // mostly paused: close() is likely to land inside a pause
        assertTrue(vcpus.threeCycles.await(30, TimeUnit.SECONDS), "three pause-resume cycles");
        t.close();
        assertFalse(vcpus.paused, "running after close");
        assertEquals(vcpus.pauses.get(), vcpus.resumes.get());
        int after = vcpus.pauses.get();
        t.set(50);
        t.close();
        assertEquals(after, vcpus.pauses.get(), "nothing after close");
    }

    @Test
    void aVmThatFailsUnderTheThrottleEndsItQuietly() throws Exception {
        CountDownLatch tried = new CountDownLatch(1);
        Pausable broken = new Pausable() {
            @Override
            public void start() {}

            @Override
            public void pause() {
                tried.countDown();
                throw new IllegalStateException("VM closed");
            }

            @Override
            public void resume() {
                throw new AssertionError("never paused");
            }

            @Override
            public boolean paused() {
                return false;
            }
        };
        GuestThrottle t = new GuestThrottle(broken, "test");
        t.set(50);
        assertTrue(tried.await(30, TimeUnit.SECONDS));
        t.close(); // returns: the thread ended on the failure
    }

    @Test
    void percentagesOutOfRangeAreRefused() {
        GuestThrottle t = new GuestThrottle(new CountingVcpus(), "test");
        assertThrows(IllegalArgumentException.class, () -> t.set(100));
        assertThrows(IllegalArgumentException.class, () -> t.set(-1));
        t.close();
    }
}
