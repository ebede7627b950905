package dev.ferry.vm;

import java.time.Duration;
import java.util.concurrent.TimeoutException;

/**
 * The guest's own view of itself, from Ferry's workload: it reports progress every period (the gaps
 * are the pauses it felt), counts its work, and checks its whole working set on request.
 */
public interface GuestProbe {
    /** Reports so far, the time of the last one and of the first after {@link #resetGapTracking()}, and the largest gap. */
    record ReportStats(long reports, long lastReportNanos, long firstReportAfterResetNanos, long maxGapNanos) {}

    /** How often each vCPU reports. */
    Duration reportPeriod();

    /** Pages the self-check covers. */
    long workingSetPages();

    /** Asks the running guest to check every page it owns; returns the number of wrong pages. */
    long selfCheck(Duration timeout) throws InterruptedException, TimeoutException;

    /** Waits until every vCPU finished filling its pages; false on timeout. */
    boolean awaitFillDone(Duration timeout) throws InterruptedException;

    /** Waits until {@code n} more reports arrived than {@code since}; false on timeout. */
    boolean awaitReports(long since, long n, Duration timeout) throws InterruptedException;

    /** Report timestamps are CLOCK_MONOTONIC, comparable between processes on one host. */
    ReportStats reportStats();

    /** Starts a new window: forgets the largest gap and the first report, so the next shows a pause. */
    void resetGapTracking();

    /** Sum of every vCPU's loop counter: rises while the guest runs. */
    long guestCounter();

    /** Pages the guest wrote since it booted, fill included, all vCPUs. */
    long guestPagesWritten();
}
