package dev.ferry.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.ferry.memory.DirtyTracker;
import dev.ferry.vm.GuestProbe;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.VmConfig;
import java.time.Duration;

/** Runs an in-process VM for a while and measures it from the guest's own figures. */
final class VmRunner {
    private static final long SAMPLE_NANOS = 100_000_000L;

    private VmRunner() {}

    /**
     * Starts {@code vm}, lets it run {@code seconds} (after a fresh guest finished its fill), counts
     * dirty pages through the backend's dirty tracking, then has the guest self-check its working set.
     */
    static ObjectNode runAndMeasure(GuestVm vm, double seconds, boolean fresh) throws Exception {
        long t0 = System.nanoTime();
        if (vm.paused()) {
            vm.start();
        }
        GuestProbe port = vm.probe().orElseThrow(() -> new IllegalStateException("the guest has no workload probe"));
        long fillMs = -1;
        if (fresh) {
            if (!port.awaitFillDone(Duration.ofSeconds(120))) {
                vm.throwIfFailed();
                throw new IllegalStateException("the guest did not finish filling its working set within 120 s");
            }
            fillMs = (System.nanoTime() - t0) / 1_000_000;
        }
        vm.throwIfFailed();
        DirtyTracker log = vm.dirtyTracker();
        log.enable();
        log.fetchAndClear(); // start the window clean
        long windowStart = System.nanoTime();
        long end = windowStart + (long) (seconds * 1e9); // the measured window starts after the fill
        long pagesBefore = port.guestPagesWritten();
        long dirtyPages = 0;
        port.resetGapTracking();
        while (System.nanoTime() < end) {
            long left = end - System.nanoTime();
            Thread.sleep(Math.max(1, Math.min(SAMPLE_NANOS, left) / 1_000_000));
            dirtyPages += log.fetchAndClear().count();
            vm.throwIfFailed();
        }
        long windowNanos = Math.max(1, System.nanoTime() - windowStart);
        long pagesWritten = port.guestPagesWritten() - pagesBefore;
        log.disable();
        GuestProbe.ReportStats stats = port.reportStats();
        long wrong = port.selfCheck(Duration.ofSeconds(120));
        long elapsedMs = (System.nanoTime() - t0) / 1_000_000;

        VmConfig config = vm.shape().config();
        ObjectNode o = Output.object();
        o.put("backend", vm.backend().cliName());
        o.put("guest_counter", port.guestCounter());
        o.put("vcpu_exits", vm.vcpuExits());
        o.put("dirty_pages_per_second", Math.round(dirtyPages * 1e9 / windowNanos));
        o.put("page_writes_per_second", Math.round(pagesWritten * 1e9 / windowNanos));
        o.put("memory_bytes", config.memoryBytes());
        o.put("working_set_bytes", config.workload().workingSetBytes());
        o.put("vcpus", config.vcpus());
        o.put("elapsed_ms", elapsedMs);
        if (fillMs >= 0) {
            o.put("fill_ms", fillMs);
        }
        o.put("progress_reports", stats.reports());
        o.put("max_report_gap_ms", stats.maxGapNanos() / 1e6);
        o.put("wrong_pages", wrong);
        return o;
    }
}
