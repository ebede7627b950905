package dev.ferry.dataplane;

import java.util.concurrent.TimeUnit;

/**
 * A token bucket on wire bytes, shared by all streams of a {@link PageSender} (so the limit is per migration, not
 * per stream). The bucket holds at most 1/20 s worth of bytes, so bursts stay small; an acquire larger than the
 * bucket is granted by going into debt, and the caller sleeps until the debt is paid, which keeps the long-run
 * rate exact: whatever has been granted by time t is at most {@code burst + rate * t}.
 *
 * <p>Thread-safe. The rate can be changed at any time ({@link #setRate}); callers already sleeping off a debt pay
 * the rest of it at the new rate (at once when the limit is lifted), within {@link #SLEEP_SLICE_NANOS}.
 */
public final class BandwidthLimiter {
    /** Time source and sleeper; replaced by a fake clock in tests. */
    interface Clock {
        long nanoTime();

        void sleepNanos(long nanos) throws InterruptedException;
    }

    static final Clock SYSTEM_CLOCK = new Clock() {
        @Override
        public long nanoTime() {
            return System.nanoTime();
        }

        @Override
        public void sleepNanos(long nanos) throws InterruptedException {
            TimeUnit.NANOSECONDS.sleep(nanos);
        }
    };

    /** Bucket size: 1/20 s of the rate. */
    static final int BURST_DIVISOR = 20;

    private final Clock clock;
    // All guarded by this.
    private long rate;       // bytes per second; 0 = unlimited
    private double tokens;   // may go negative (debt)
    private long lastRefill;
    private long granted;    // total bytes acquired, for accounting

    BandwidthLimiter(long bytesPerSecond, Clock clock) {
        if (bytesPerSecond < 0) {
            throw new IllegalArgumentException("rate must be >= 0 (0 = unlimited), got " + bytesPerSecond);
        }
        this.clock = clock;
        this.rate = bytesPerSecond;
        this.lastRefill = clock.nanoTime();
        this.tokens = burst(bytesPerSecond);
    }

    /** No limit: {@link #acquire} returns at once (until {@link #setRate} sets one). */
    public static BandwidthLimiter unlimited() {
        return new BandwidthLimiter(0, SYSTEM_CLOCK);
    }

    /** At most {@code bps} bytes per second (with a burst of {@code bps / 20}). */
    public static BandwidthLimiter bytesPerSecond(long bps) {
        if (bps <= 0) {
            throw new IllegalArgumentException("rate must be > 0 bytes per second, got " + bps);
        }
        return new BandwidthLimiter(bps, SYSTEM_CLOCK);
    }

    /** Takes {@code bytes} tokens, sleeping as long as the bucket is in debt afterwards. */
    public void acquire(long bytes) throws InterruptedException {
        if (bytes < 0) {
            throw new IllegalArgumentException("negative byte count " + bytes);
        }
        long sleep;
        long sleepRate;
        synchronized (this) {
            granted += bytes;
            if (rate == 0) {
                return;
            }
            refill();
            tokens -= bytes;
            if (tokens >= 0) {
                return;
            }
            sleepRate = rate;
            sleep = (long) Math.ceil(-tokens * 1e9 / rate);
        }
        // In slices, so that a new rate (a cap changed mid-migration) applies to the debt still being slept off
        // within one slice, instead of after a sleep computed at the old rate.
        while (sleep > 0) {
            long slice = Math.min(sleep, SLEEP_SLICE_NANOS);
            clock.sleepNanos(slice);
            sleep -= slice;
            synchronized (this) {
                if (rate != sleepRate) {
                    if (rate == 0) {
                        return;
                    }
                    sleep = (long) Math.ceil(sleep * (double) sleepRate / rate);
                    sleepRate = rate;
                }
            }
        }
    }

    /** A new rate takes effect on callers already sleeping within this long. */
    static final long SLEEP_SLICE_NANOS = 50_000_000L;

    /** Changes the rate; 0 removes the limit. */
    public synchronized void setRate(long bps) {
        if (bps < 0) {
            throw new IllegalArgumentException("rate must be >= 0 (0 = unlimited), got " + bps);
        }
        refill();
        if (rate == 0) {
            tokens = burst(bps); // coming from unlimited: start with a full bucket
        }
        rate = bps;
        tokens = Math.min(tokens, burst(bps));
    }

    /** Current rate in bytes per second; 0 = unlimited. */
    public synchronized long rate() {
        return rate;
    }

    /** Total bytes acquired so far (whatever the rate was). */
    public synchronized long grantedBytes() {
        return granted;
    }

    synchronized double tokens() {
        refill();
        return tokens;
    }

    static long burst(long bps) {
        return Math.max(1, bps / BURST_DIVISOR);
    }

    private void refill() {
        long now = clock.nanoTime();
        long elapsed = now - lastRefill;
        lastRefill = now;
        if (rate > 0 && elapsed > 0) {
            tokens = Math.min(burst(rate), tokens + elapsed * (rate / 1e9));
        }
    }
}
