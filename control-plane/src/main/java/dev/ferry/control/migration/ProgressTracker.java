package dev.ferry.control.migration;

import dev.ferry.v1.MigrationProgress;
import dev.ferry.v1.MigrationStatistics;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.util.Objects;
import java.util.Optional;

/**
 * Counts what a migration moved and turns it into {@link MigrationProgress} snapshots and the counter part of
 * {@link MigrationStatistics}. Used by both sides: the source counts what it sent, the destination what arrived.
 *
 * <p>Counters of finished rounds are committed from the round's {@link RoundStats} (authoritative); while a round
 * runs, {@link #pagesMoved} adds live counts so that a long first round does not look stuck. When the round
 * finishes its live counts are replaced by its stats, so nothing is counted twice.
 *
 * <p>Not thread-safe: owned by one state machine, whose caller serializes events.
 */
public final class ProgressTracker {
    private final InstantSource clock;

    private int round;
    private boolean inRound;
    private long pages;
    private long zeroPages;
    private long roundPages;
    private long roundZeroPages;
    private long bytesRemaining;
    private long remainingAtRoundStart;
    private long dirtyRate;
    private long transferRate;
    private Duration expectedDowntime;
    private int throttle; // auto-converge's, percent
    private int maxThrottle;
    private long compressedPages;
    private long compressedBytes;
    private long faults;
    private Instant lastPageAt;
    private long memoryBytes; // the guest's, once negotiated
    private boolean postcopy; // the destination runs the guest: nothing is dirtied against the transfer

    public ProgressTracker(InstantSource clock) {
        this.clock = Objects.requireNonNull(clock, "clock");
    }

    /** The destination runs the guest from now on. */
    public void postcopyStarted() {
        postcopy = true;
    }

    /** The guest's memory size, for memory_in_place_percent. */
    public void memoryBytes(long bytes) {
        memoryBytes = bytes;
    }

    /** Starts the next round and returns its number (from 1, across the whole migration). */
    public int roundStarted() {
        if (inRound) {
            throw new IllegalStateException("round " + round + " is still running");
        }
        inRound = true;
        roundPages = 0;
        roundZeroPages = 0;
        remainingAtRoundStart = bytesRemaining;
        return ++round;
    }

    /** Raises the round number to at least {@code r} (the destination learns rounds from the batches). */
    public void observeRound(int r) {
        round = Math.max(round, r);
    }

    /**
     * Pages moved: a batch sent in the current round (source), a batch received (destination), or a fault reply.
     * Inside a round they are provisional until {@link #roundFinished}; outside one they are committed at once.
     */
    public void pagesMoved(long dataPages, long zero) {
        if (dataPages < 0 || zero < 0) {
            throw new IllegalArgumentException("negative page count");
        }
        if (inRound) {
            roundPages += dataPages;
            roundZeroPages += zero;
            bytesRemaining = Math.max(0, remainingAtRoundStart - (roundPages + roundZeroPages) * RoundStats.PAGE_BYTES);
        } else {
            pages += dataPages;
            zeroPages += zero;
        }
        if (dataPages + zero > 0) {
            lastPageAt = clock.instant();
        }
    }

    /** One postcopy fault answered with {@code dataPages} data pages and {@code zero} zero pages. */
    public void faultServed(long dataPages, long zero) {
        if (dataPages < 0 || zero < 0) {
            throw new IllegalArgumentException("negative page count");
        }
        faults++;
        pages += dataPages;
        zeroPages += zero;
        lastPageAt = clock.instant();
    }

    /** One postcopy fault counted without pages (the destination counts the faults it sends). */
    public void faultCounted() {
        faults++;
    }

    /** Ends the current round with its authoritative totals; remaining becomes the pages dirtied during it. */
    public void roundFinished(RoundStats stats) {
        if (!inRound) {
            throw new IllegalStateException("no round is running");
        }
        inRound = false;
        pages += stats.pagesSent();
        zeroPages += stats.zeroPages();
        roundPages = 0;
        roundZeroPages = 0;
        bytesRemaining = stats.dirtyBytes();
        if (stats.pagesSent() + stats.zeroPages() > 0) {
            lastPageAt = clock.instant();
        }
    }

    /** Ends the current round early (postcopy link cut): what was counted live so far is kept. */
    public void roundAbandoned() {
        if (!inRound) {
            return;
        }
        inRound = false;
        pages += roundPages;
        zeroPages += roundZeroPages;
        roundPages = 0;
        roundZeroPages = 0;
    }

    /** Takes over the planner's estimates after a precopy round. */
    public void estimates(PrecopyPlanner.Estimates e) {
        dirtyRate = e.dirtyRateBytesPerSecond();
        transferRate = e.transferRateBytesPerSecond();
        bytesRemaining = e.bytesRemaining();
        expectedDowntime = e.expectedDowntime().orElse(null);
        throttle = e.throttlePercent();
        maxThrottle = Math.max(maxThrottle, throttle);
    }

    /** The migration left precopy: auto-converge holds the guest no more. */
    public void throttleEnded() {
        throttle = 0;
    }

    /** Pages a round sent in LZ4 blocks, and the blocks' bytes. */
    public void compressed(long pages, long bytes) {
        compressedPages += pages;
        compressedBytes += bytes;
    }

    /** Sets the estimated bytes still to send (all memory before round 1; missing pages in postcopy). */
    public void bytesRemaining(long bytes) {
        if (bytes < 0) {
            throw new IllegalArgumentException("negative bytes remaining");
        }
        bytesRemaining = bytes;
        remainingAtRoundStart = bytes;
    }

    public int round() {
        return round;
    }

    public boolean inRound() {
        return inRound;
    }

    /** Data pages moved so far, the running round included. */
    public long pagesSent() {
        return pages + roundPages;
    }

    public long zeroPages() {
        return zeroPages + roundZeroPages;
    }

    /** Page bytes moved so far: 4096 per data page. */
    public long bytesSent() {
        return Math.multiplyExact(pagesSent(), RoundStats.PAGE_BYTES);
    }

    public long bytesRemaining() {
        return bytesRemaining;
    }

    public long faults() {
        return faults;
    }

    public Optional<Instant> lastPageAt() {
        return Optional.ofNullable(lastPageAt);
    }

    /** A progress snapshot with the given elapsed time (since create_time, up to end_time once terminal). */
    public MigrationProgress snapshot(Duration elapsed) {
        MigrationProgress.Builder b = MigrationProgress.newBuilder()
                .setRound(round)
                .setBytesSent(bytesSent())
                .setBytesRemaining(bytesRemaining)
                .setPagesSent(pagesSent())
                .setZeroPages(zeroPages())
                .setDirtyRateBytesPerSecond(dirtyRate)
                .setTransferRateBytesPerSecond(transferRate)
                .setElapsed(ProtoTime.toProto(elapsed))
                .setPostcopyPageFaults(faults)
                .setCpuThrottlePercent(throttle);
        if (expectedDowntime != null) {
            b.setExpectedDowntime(ProtoTime.toProto(expectedDowntime));
        }
        if (memoryBytes > 0) {
            long inPlace = Math.max(0, memoryBytes - bytesRemaining);
            b.setMemoryInPlacePercent(Math.round(inPlace * 1000.0 / memoryBytes) / 10.0);
        }
        timeRemaining().ifPresent(d -> b.setEstimatedTimeRemaining(ProtoTime.toProto(d)));
        return b.build();
    }

    /** See MigrationProgress.estimated_time_remaining: empty while unknown or not converging. */
    private Optional<Duration> timeRemaining() {
        if (transferRate <= 0) {
            return Optional.empty();
        }
        if (postcopy) {
            return Optional.of(Duration.ofNanos((long) (bytesRemaining * 1e9 / transferRate)));
        }
        long net = transferRate - dirtyRate;
        if (net <= 0 || expectedDowntime == null) {
            return Optional.empty();
        }
        return Optional.of(Duration.ofNanos((long) (bytesRemaining * 1e9 / net)).plus(expectedDowntime));
    }

    /**
     * The counter part of the statistics: transferred_bytes, rounds and throughput_bytes_per_second (bytes over
     * the time from {@code startTime} to the last page moved; 0 when nothing moved or no time passed).
     */
    public MigrationStatistics.Builder statistics(Instant startTime) {
        MigrationStatistics.Builder b = MigrationStatistics.newBuilder()
                .setTransferredBytes(bytesSent())
                .setRounds(round)
                .setMaxCpuThrottlePercent(maxThrottle)
                .setCompressedPages(compressedPages)
                .setCompressedBytes(compressedBytes);
        if (startTime != null && lastPageAt != null) {
            long nanos = ProtoTime.between(startTime, lastPageAt).toNanos();
            if (nanos > 0) {
                b.setThroughputBytesPerSecond((long) (bytesSent() * 1e9 / nanos));
            }
        }
        return b;
    }
}
