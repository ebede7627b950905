package dev.ferry.devices;

import dev.ferry.guest.GuestAbi;
import dev.ferry.kvm.state.v1.WorkloadPortState;
import dev.ferry.state.RestorePhase;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.StateException;
import dev.ferry.state.Stateful;
import dev.ferry.vm.GuestProbe.ReportStats;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.function.LongSupplier;

/**
 * The guest workload's control/status port (see abi.h). Each vCPU reports progress with an
 * {@code in} about every millisecond; the device timestamps it and hands back a pending command
 * (a self-check). Self-check results come back with {@code out}, one per vCPU, and are summed.
 * The timestamps are what measure the pause the guest itself felt during a migration.
 */
public final class WorkloadPort implements PortIoDevice, Stateful<WorkloadPortState> {
    public static final SectionSchema<WorkloadPortState> SCHEMA = SectionSchema
            .builder("device.workload", WorkloadPortState.getDefaultInstance())
            .version(1).minReadableVersion(1).phase(RestorePhase.DEVICE).build();

    private final int vcpus;
    private final LongSupplier clock;

    // All state below is guarded by this.
    private final int[] pendingCommands;
    private long reports;
    private long lastReportNanos;
    private long firstReportAfterResetNanos = -1;
    private long maxGapNanos;
    private long gapTrackingFromNanos = Long.MIN_VALUE;
    private int startedVcpus;
    private int fillDoneVcpus;
    private boolean badParams;
    private boolean checkInProgress;
    private int checkResultsReceived;
    private long checkWrongSum;
    private long lastCheckWrong = -1;
    private long checksCompleted;
    private final List<CompletableFuture<Long>> checkWaiters = new ArrayList<>();

    public WorkloadPort(int vcpus) {
        this(vcpus, System::nanoTime);
    }

    /** {@code clock} is CLOCK_MONOTONIC in ns (System.nanoTime), comparable across processes on one host. */
    public WorkloadPort(int vcpus, LongSupplier clock) {
        this.vcpus = vcpus;
        this.clock = clock;
        this.pendingCommands = new int[vcpus];
    }

    @Override
    public int basePort() {
        return GuestAbi.PORT_PROGRESS;
    }

    @Override
    public int portCount() {
        return 3;
    }

    @Override
    public synchronized int read(int vcpu, int port, int size) {
        if (port != GuestAbi.PORT_PROGRESS || vcpu >= vcpus) {
            return 0;
        }
        long now = clock.getAsLong();
        if (reports > 0 && now - lastReportNanos > maxGapNanos && lastReportNanos >= gapTrackingFromNanos) {
            maxGapNanos = now - lastReportNanos;
        }
        if (firstReportAfterResetNanos < 0) {
            firstReportAfterResetNanos = now;
        }
        reports++;
        lastReportNanos = now;
        int cmd = pendingCommands[vcpu];
        pendingCommands[vcpu] = GuestAbi.CMD_NONE;
        notifyAll();
        return cmd;
    }

    @Override
    public void write(int vcpu, int port, int size, int value) {
        List<CompletableFuture<Long>> done = null;
        long result = 0;
        synchronized (this) {
            if (port == GuestAbi.PORT_RESULT && checkInProgress) {
                checkWrongSum += Integer.toUnsignedLong(value);
                if (++checkResultsReceived == vcpus) {
                    checkInProgress = false;
                    lastCheckWrong = checkWrongSum;
                    checksCompleted++;
                    result = checkWrongSum;
                    done = new ArrayList<>(checkWaiters);
                    checkWaiters.clear();
                }
            } else if (port == GuestAbi.PORT_EVENT) {
                if (value == GuestAbi.EVENT_STARTED) {
                    startedVcpus++;
                } else if (value == GuestAbi.EVENT_FILL_DONE) {
                    fillDoneVcpus++;
                } else if (value == GuestAbi.EVENT_BAD_PARAMS) {
                    badParams = true;
                }
            }
            notifyAll();
        }
        if (done != null) {
            for (CompletableFuture<Long> f : done) {
                f.complete(result);
            }
        }
    }

    /**
     * Asks every vCPU to check its slice of the working set at its next report. The future
     * completes with the total number of wrong pages. Joins a check already in progress.
     */
    public synchronized CompletableFuture<Long> requestSelfCheck() {
        CompletableFuture<Long> f = new CompletableFuture<>();
        checkWaiters.add(f);
        if (!checkInProgress) {
            checkInProgress = true;
            checkResultsReceived = 0;
            checkWrongSum = 0;
            for (int i = 0; i < vcpus; i++) {
                pendingCommands[i] = GuestAbi.CMD_SELF_CHECK;
            }
        }
        return f;
    }

    /** Waits until every vCPU finished its initial fill; false on timeout. */
    public synchronized boolean awaitFillDone(Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (fillDoneVcpus < vcpus && !badParams) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return false;
            }
            wait(Math.max(1, left / 1_000_000));
        }
        if (badParams) {
            throw new IllegalStateException("the guest rejected its parameter block");
        }
        return true;
    }

    /** Waits until {@code n} more progress reports arrived than {@code since}; false on timeout. */
    public synchronized boolean awaitReports(long since, long n, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (reports < since + n) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return false;
            }
            wait(Math.max(1, left / 1_000_000));
        }
        return true;
    }

    /** Statistics of the progress reports, for measuring guest-visible pauses. */
    public synchronized ReportStats reportStats() {
        return new ReportStats(reports, lastReportNanos, firstReportAfterResetNanos, maxGapNanos);
    }

    /**
     * Starts a new measurement window: forgets the largest gap and the first-report time, so the
     * next report after a resume shows how long the guest was stopped.
     */
    public synchronized void resetGapTracking() {
        maxGapNanos = 0;
        firstReportAfterResetNanos = -1;
        gapTrackingFromNanos = clock.getAsLong();
    }

    public synchronized long lastCheckWrong() {
        return lastCheckWrong;
    }

    public synchronized boolean badParams() {
        return badParams;
    }

    @Override
    public SectionSchema<WorkloadPortState> schema() {
        return SCHEMA;
    }

    @Override
    public String instanceId() {
        return "";
    }

    @Override
    public synchronized WorkloadPortState saveState() {
        WorkloadPortState.Builder b = WorkloadPortState.newBuilder()
                .setReports(reports).setLastReportMonotonicNanos(lastReportNanos)
                .setStartedVcpus(startedVcpus).setFillDoneVcpus(fillDoneVcpus).setBadParams(badParams)
                .setCheckInProgress(checkInProgress).setCheckResultsReceived(checkResultsReceived)
                .setCheckWrongSum(checkWrongSum).setLastCheckWrong(lastCheckWrong).setChecksCompleted(checksCompleted);
        for (int c : pendingCommands) {
            b.addPendingCommands(c);
        }
        return b.build();
    }

    @Override
    public void validateState(WorkloadPortState s) throws StateException {
        if (s.getPendingCommandsCount() != vcpus) {
            throw new StateException(SCHEMA.name(), "", "pending_commands: " + s.getPendingCommandsCount()
                    + " entries (one per vCPU), this VM has " + vcpus + " vCPUs");
        }
    }

    @Override
    public synchronized void restoreState(WorkloadPortState s) throws StateException {
        validateState(s);
        for (int i = 0; i < vcpus; i++) {
            pendingCommands[i] = s.getPendingCommands(i);
        }
        reports = s.getReports();
        lastReportNanos = s.getLastReportMonotonicNanos();
        startedVcpus = s.getStartedVcpus();
        fillDoneVcpus = s.getFillDoneVcpus();
        badParams = s.getBadParams();
        checkInProgress = s.getCheckInProgress();
        checkResultsReceived = s.getCheckResultsReceived();
        checkWrongSum = s.getCheckWrongSum();
        lastCheckWrong = s.getLastCheckWrong();
        checksCompleted = s.getChecksCompleted();
        // The restored last-report time is the source's: the first report here measures the pause.
        firstReportAfterResetNanos = -1;
        maxGapNanos = 0;
        gapTrackingFromNanos = Long.MIN_VALUE;
    }
}
