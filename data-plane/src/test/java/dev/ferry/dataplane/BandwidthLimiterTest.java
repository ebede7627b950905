package dev.ferry.dataplane;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Token accounting of {@link BandwidthLimiter} on a fake clock: no assertion depends on wall-clock time. */
class BandwidthLimiterTest {
    private static final long MiB = 1 << 20;

    @Test
    void grantsNeverExceedBurstPlusRateTimesElapsed() throws InterruptedException {
        FakeClock clock = new FakeClock();
        long rate = 10 * MiB;
        BandwidthLimiter l = new BandwidthLimiter(rate, clock);
        long start = clock.nanoTime();
        long granted = 0;
        for (int i = 0; i < 500; i++) {
            long n = (i % 7 + 1) * 64 * 1024L; // 64 KiB .. 448 KiB
            l.acquire(n);
            granted += n;
            double elapsed = (clock.nanoTime() - start) / 1e9;
            assertTrue(granted <= BandwidthLimiter.burst(rate) + rate * elapsed + 1,
                    "granted " + granted + " after " + elapsed + " s");
        }
        // And the limiter is not slower than the rate: the sleeps pay exactly the debt beyond the initial burst.
        double expected = (granted - BandwidthLimiter.burst(rate)) / (double) rate;
        assertEquals(expected, clock.sleptNanos() / 1e9, 1e-6);
        assertEquals(granted, l.grantedBytes());
    }

    @Test
    void burstIsOneTwentiethOfASecond() throws InterruptedException {
        FakeClock clock = new FakeClock();
        BandwidthLimiter l = new BandwidthLimiter(20 * MiB, clock);
        l.acquire(MiB); // exactly the burst: no sleep
        assertEquals(0, clock.sleptNanos());
        clock.advance(10_000_000_000L); // idle 10 s: the bucket refills to the burst, not to 10 s worth
        l.acquire(MiB);
        assertEquals(0, clock.sleptNanos());
        l.acquire(MiB); // empty bucket: 1 MiB at 20 MiB/s is 50 ms
        assertEquals(50_000_000L, clock.sleptNanos(), 1_000);
    }

    @Test
    void acquireLargerThanBurstGoesIntoDebt() throws InterruptedException {
        FakeClock clock = new FakeClock();
        BandwidthLimiter l = new BandwidthLimiter(MiB, clock); // burst 52428 bytes
        l.acquire(4 * MiB);
        assertEquals((4 * MiB - BandwidthLimiter.burst(MiB)) * 1e9 / MiB, clock.sleptNanos(), 1_000);
        assertEquals(0, l.tokens(), 1); // debt paid by the sleep, nothing more
    }

    @Test
    void setRateChangesTheSlopeFromNowOn() throws InterruptedException {
        FakeClock clock = new FakeClock();
        BandwidthLimiter l = new BandwidthLimiter(MiB, clock);
        l.acquire(BandwidthLimiter.burst(MiB));
        l.acquire(MiB); // 1 s at 1 MiB/s
        assertEquals(1e9, clock.sleptNanos(), 1_000);
        l.setRate(4 * MiB);
        l.acquire(MiB); // 0.25 s at 4 MiB/s (bucket empty)
        assertEquals(1.25e9, clock.sleptNanos(), 1_000);
        assertEquals(4 * MiB, l.rate());
    }

    @Test
    void unlimitedNeverSleepsAndCanBeLimitedLater() throws InterruptedException {
        FakeClock clock = new FakeClock();
        BandwidthLimiter l = new BandwidthLimiter(0, clock);
        for (int i = 0; i < 1000; i++) {
            l.acquire(MiB);
        }
        assertEquals(0, clock.sleptNanos());
        assertEquals(1000 * MiB, l.grantedBytes());
        l.setRate(2 * MiB);
        l.acquire(BandwidthLimiter.burst(2 * MiB)); // starts with a full bucket
        assertEquals(0, clock.sleptNanos());
        l.acquire(2 * MiB);
        assertEquals(1e9, clock.sleptNanos(), 1_000);
        l.setRate(0);
        l.acquire(100 * MiB);
        assertEquals(1e9, clock.sleptNanos(), 1_000);
    }

    @Test
    void rejectsNegativeRatesAndCounts() {
        assertThrows(IllegalArgumentException.class, () -> BandwidthLimiter.bytesPerSecond(0));
        assertThrows(IllegalArgumentException.class, () -> BandwidthLimiter.unlimited().setRate(-1));
        assertThrows(IllegalArgumentException.class, () -> BandwidthLimiter.unlimited().acquire(-1));
    }

    /** A clock whose sleeper changes the rate once {@code after} nanoseconds have been slept. */
    private static final class RateChangingClock implements BandwidthLimiter.Clock {
        private final long after;
        private final long newRate;
        BandwidthLimiter limiter;
        long slept;

        RateChangingClock(long after, long newRate) {
            this.after = after;
            this.newRate = newRate;
        }

        @Override
        public long nanoTime() {
            return slept;
        }

        @Override
        public void sleepNanos(long nanos) {
            boolean before = slept < after;
            slept += nanos;
            if (before && slept >= after) {
                limiter.setRate(newRate); // as UpdateMigration would, from another thread
            }
        }
    }

    @Test
    void liftingTheLimitEndsADebtBeingSleptOff() throws InterruptedException {
        RateChangingClock clock = new RateChangingClock(1_000_000_000L, 0);
        clock.limiter = new BandwidthLimiter(MiB, clock);
        clock.limiter.acquire(BandwidthLimiter.burst(MiB));
        clock.limiter.acquire(10 * MiB); // 10 s of debt at 1 MiB/s; lifted after 1 s
        assertEquals(1e9, clock.slept, BandwidthLimiter.SLEEP_SLICE_NANOS);
    }

    @Test
    void aHigherRatePaysTheRestOfTheDebtFaster() throws InterruptedException {
        RateChangingClock clock = new RateChangingClock(1_000_000_000L, 2 * MiB);
        clock.limiter = new BandwidthLimiter(MiB, clock);
        clock.limiter.acquire(BandwidthLimiter.burst(MiB));
        clock.limiter.acquire(10 * MiB); // 1 s at 1 MiB/s, then the other 9 MiB at 2 MiB/s
        assertEquals(5.5e9, clock.slept, 1e6);
    }
}
