package dev.ferry.guest;

import java.time.Duration;
import java.util.Objects;

/**
 * What the guest workload does: fill {@code workingSetBytes}, then keep writing pages.
 *
 * @param workingSetBytes bytes filled once and then rewritten; a multiple of 4 KiB
 * @param dirtyRateBytesPerSecond paced write rate; 0 = fill once, then only count and report
 * @param unlimited write as fast as the vCPU can (the rate is ignored)
 * @param pattern page order
 * @param reportPeriod how often each vCPU reports progress through its port
 * @param seed seed of the random and hot/cold patterns
 * @param hotPermille hot/cold: size of the hot set, per mille of the working set
 * @param hotWritePermille hot/cold: share of writes that go to the hot set, per mille
 * @param wordStride only every wordStride-th word of a page is data, the rest 0: 1 (every word, incompressible),
 *                   2, 4 .. 512 (pages compress about wordStride:1), like guests whose memory is part empty
 */
public record WorkloadSpec(
        long workingSetBytes,
        long dirtyRateBytesPerSecond,
        boolean unlimited,
        AccessPattern pattern,
        Duration reportPeriod,
        long seed,
        int hotPermille,
        int hotWritePermille,
        int wordStride) {

    public static final Duration DEFAULT_REPORT_PERIOD = Duration.ofMillis(1);

    public WorkloadSpec {
        Objects.requireNonNull(pattern, "pattern");
        Objects.requireNonNull(reportPeriod, "reportPeriod");
        if (workingSetBytes < GuestAbi.PAGE_SIZE || workingSetBytes % GuestAbi.PAGE_SIZE != 0) {
            throw new IllegalArgumentException("working set must be a positive multiple of 4 KiB, got " + workingSetBytes);
        }
        if (dirtyRateBytesPerSecond < 0) {
            throw new IllegalArgumentException("dirty rate must be >= 0, got " + dirtyRateBytesPerSecond);
        }
        if (reportPeriod.isNegative() || reportPeriod.isZero()) {
            throw new IllegalArgumentException("report period must be positive");
        }
        if (hotPermille < 1 || hotPermille > 1000 || hotWritePermille < 0 || hotWritePermille > 1000) {
            throw new IllegalArgumentException("hot/cold shares must be within 1..1000 and 0..1000 per mille");
        }
        if (wordStride < 1 || wordStride > GuestAbi.PAGE_SIZE / 8 || Integer.bitCount(wordStride) != 1) {
            throw new IllegalArgumentException("word stride must be a power of two from 1 to 512, got " + wordStride);
        }
    }

    /** Defaults: random pattern, 1 ms reports, 10% hot pages taking 90% of writes. */
    public static WorkloadSpec of(long workingSetBytes, long dirtyRateBytesPerSecond, boolean unlimited) {
        return new WorkloadSpec(workingSetBytes, dirtyRateBytesPerSecond, unlimited, AccessPattern.RANDOM,
                DEFAULT_REPORT_PERIOD, 0x5eed, 100, 900, 1);
    }

    public WorkloadSpec withPattern(AccessPattern p) {
        return new WorkloadSpec(workingSetBytes, dirtyRateBytesPerSecond, unlimited, p, reportPeriod, seed,
                hotPermille, hotWritePermille, wordStride);
    }

    public WorkloadSpec withReportPeriod(Duration d) {
        return new WorkloadSpec(workingSetBytes, dirtyRateBytesPerSecond, unlimited, pattern, d, seed,
                hotPermille, hotWritePermille, wordStride);
    }

    public WorkloadSpec withWordStride(int stride) {
        return new WorkloadSpec(workingSetBytes, dirtyRateBytesPerSecond, unlimited, pattern, reportPeriod, seed,
                hotPermille, hotWritePermille, stride);
    }

    public long workingSetPages() {
        return workingSetBytes / GuestAbi.PAGE_SIZE;
    }

    /** True when the guest fills once and then stops writing. */
    public boolean quiet() {
        return !unlimited && dirtyRateBytesPerSecond == 0;
    }
}
