package dev.ferry.dataplane.postcopy;

/**
 * Log-linear histogram of non-negative values (microseconds here): exact below 128, then 64 buckets per power of two
 * (about 1.6% relative precision), so percentiles cost a fixed 30 KiB however many values are recorded. Not
 * thread-safe (the pager records under its lock).
 */
final class LatencyHistogram {
    private static final int LINEAR = 128;
    private static final int SUB_BITS = 6;
    private static final int SUB = 1 << SUB_BITS;
    private static final int BUCKETS = LINEAR + (63 - 7) * SUB;

    private final long[] counts = new long[BUCKETS];
    private long total;
    private long max;

    void record(long value) {
        if (value < 0) {
            value = 0;
        }
        counts[bucket(value)]++;
        total++;
        if (value > max) {
            max = value;
        }
    }

    long count() {
        return total;
    }

    long max() {
        return max;
    }

    /** The value at quantile {@code q} (0..1): the lower bound of its bucket, at most {@link #max()}; 0 when empty. */
    long percentile(double q) {
        if (total == 0) {
            return 0;
        }
        long rank = Math.max(1, (long) Math.ceil(q * total));
        long seen = 0;
        for (int b = 0; b < BUCKETS; b++) {
            seen += counts[b];
            if (seen >= rank) {
                return Math.min(lowerBound(b), max);
            }
        }
        return max;
    }

    static int bucket(long v) {
        if (v < LINEAR) {
            return (int) v;
        }
        int exp = 63 - Long.numberOfLeadingZeros(v); // >= 7
        int sub = (int) (v >>> (exp - SUB_BITS)) & (SUB - 1);
        return LINEAR + (exp - 7) * SUB + sub;
    }

    static long lowerBound(int b) {
        if (b < LINEAR) {
            return b;
        }
        int exp = (b - LINEAR) / SUB + 7;
        int sub = (b - LINEAR) % SUB;
        return (1L << exp) + ((long) sub << (exp - SUB_BITS));
    }
}
