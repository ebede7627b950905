package dev.ferry.dataplane;

import java.util.concurrent.atomic.AtomicLong;

/** A clock that only moves when someone sleeps on it (or the test advances it): no real waiting in limiter tests. */
final class FakeClock implements BandwidthLimiter.Clock {
    private final AtomicLong now = new AtomicLong(1_000_000_000L);
    private final AtomicLong slept = new AtomicLong();

    @Override
    public long nanoTime() {
        return now.get();
    }

    @Override
    public void sleepNanos(long nanos) {
        slept.addAndGet(nanos);
        now.addAndGet(nanos);
    }

    void advance(long nanos) {
        now.addAndGet(nanos);
    }

    long sleptNanos() {
        return slept.get();
    }
}
