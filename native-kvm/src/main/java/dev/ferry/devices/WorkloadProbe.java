package dev.ferry.devices;

import dev.ferry.guest.GuestAbi;
import dev.ferry.memory.GuestMemory;
import dev.ferry.vm.GuestProbe;
import dev.ferry.vm.VmConfig;
import dev.ferry.vm.VmFailure;
import java.time.Duration;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/** {@link GuestProbe} of Ferry's workload: its port's reports and the status blocks in guest memory. */
public final class WorkloadProbe implements GuestProbe {
    private final WorkloadPort port;
    private final GuestMemory memory;
    private final VmConfig config;

    public WorkloadProbe(WorkloadPort port, GuestMemory memory, VmConfig config) {
        this.port = port;
        this.memory = memory;
        this.config = config;
    }

    @Override
    public Duration reportPeriod() {
        return config.workload().reportPeriod();
    }

    @Override
    public long workingSetPages() {
        return config.workload().workingSetPages();
    }

    @Override
    public long selfCheck(Duration timeout) throws InterruptedException, TimeoutException {
        try {
            return port.requestSelfCheck().get(timeout.toNanos(), TimeUnit.NANOSECONDS);
        } catch (ExecutionException e) {
            throw new VmFailure("self-check failed", e.getCause());
        }
    }

    @Override
    public boolean awaitFillDone(Duration timeout) throws InterruptedException {
        return port.awaitFillDone(timeout);
    }

    @Override
    public boolean awaitReports(long since, long n, Duration timeout) throws InterruptedException {
        return port.awaitReports(since, n, timeout);
    }

    @Override
    public ReportStats reportStats() {
        return port.reportStats();
    }

    @Override
    public void resetGapTracking() {
        port.resetGapTracking();
    }

    @Override
    public long guestCounter() {
        return sumStatus(GuestAbi.S_COUNTER);
    }

    @Override
    public long guestPagesWritten() {
        return sumStatus(GuestAbi.S_PAGES_WRITTEN);
    }

    private long sumStatus(int field) {
        long sum = 0;
        for (int i = 0; i < config.vcpus(); i++) {
            sum += memory.getLong(GuestAbi.statusGpa(i) + field);
        }
        return sum;
    }
}
