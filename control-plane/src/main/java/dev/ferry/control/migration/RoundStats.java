package dev.ferry.control.migration;

import java.time.Duration;
import java.util.Objects;

/**
 * What one finished round measured, as reported by the data-plane edge.
 *
 * <p>Byte counts are derived from page counts, as the API defines them: 4096 bytes per data page; zero pages
 * (sent as zero ranges without data) and message headers count no bytes.
 *
 * @param pagesSent    pages sent with their data in this round (all streams)
 * @param zeroPages    pages sent as zero ranges in this round
 * @param pagesDirtied pages the guest dirtied while the round ran: the dirty set harvested at the end of the
 *                     round, which the next round has to send. 0 for the stop-and-copy round and for postcopy
 *                     background passes (the guest is not running on the source)
 * @param elapsed      wall time of the round, from its first batch to the last acknowledgement
 */
public record RoundStats(long pagesSent, long zeroPages, long pagesDirtied, Duration elapsed) {
    /** Bytes per page everywhere in the API (common.proto: pages are 4 KiB whatever backs them). */
    public static final long PAGE_BYTES = 4096;

    public RoundStats {
        Objects.requireNonNull(elapsed, "elapsed");
        if (pagesSent < 0 || zeroPages < 0 || pagesDirtied < 0) {
            throw new IllegalArgumentException("negative page count: sent " + pagesSent + ", zero " + zeroPages
                    + ", dirtied " + pagesDirtied);
        }
        if (elapsed.isNegative()) {
            throw new IllegalArgumentException("negative round time " + elapsed);
        }
    }

    /** Page bytes sent: {@code pagesSent * 4096}. */
    public long bytesSent() {
        return Math.multiplyExact(pagesSent, PAGE_BYTES);
    }

    /** Page bytes the next round has to send: {@code pagesDirtied * 4096}. */
    public long dirtyBytes() {
        return Math.multiplyExact(pagesDirtied, PAGE_BYTES);
    }
}
