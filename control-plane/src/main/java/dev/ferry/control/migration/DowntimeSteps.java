package dev.ferry.control.migration;

import dev.ferry.control.vm.VmProtos;
import dev.ferry.v1.CompleteIncomingMigrationResponse;
import dev.ferry.v1.DowntimeBreakdown;

/**
 * Times the steps of one switchover on the source as they happen (monotonic clock), for
 * MigrationStatistics.downtime_breakdown: each {@code mark} closes the step that ran since the previous one, so the
 * steps add up to the time they took together. In precopy the device state is saved while the last pages go out:
 * {@link #deviceStateSaved} then comes before {@link #lastPagesSent}, which counts only the wait after it.
 */
final class DowntimeSteps {
    private final DowntimeBreakdown.Builder b = DowntimeBreakdown.newBuilder();
    private long last;

    /** Starts the clock: call right before pausing the source's vCPUs. */
    DowntimeSteps() {
        last = System.nanoTime();
    }

    private long lap() {
        long now = System.nanoTime();
        long d = now - last;
        last = now;
        return d;
    }

    void paused() {
        b.setPause(VmProtos.duration(lap()));
    }

    void harvested() {
        b.setDirtyHarvest(VmProtos.duration(lap()));
    }

    void lastPagesSent(long pages) {
        b.setLastPages(VmProtos.duration(lap())).setLastPagesCount(pages);
    }

    void deviceStateSaved() {
        b.setDeviceStateSave(VmProtos.duration(lap()));
    }

    void deviceStateTransferred() {
        b.setDeviceStateTransfer(VmProtos.duration(lap()));
    }

    /** Marks the start of CompleteIncomingMigration (what ran since, e.g. the digest, is not a step). */
    void switchoverRequested() {
        lap();
    }

    /** CompleteIncomingMigration answered: splits its round trip into the destination's part and the hops. */
    DowntimeBreakdown switchedOver(CompleteIncomingMigrationResponse r) {
        long roundTrip = lap();
        long resume = VmProtos.toJava(r.getResumeDuration()).toNanos();
        long after = VmProtos.toJava(r.getAnsweredAfterResume()).toNanos();
        return b.setDestinationResume(r.getResumeDuration())
                .setSwitchoverHops(VmProtos.duration(Math.max(0, roundTrip - resume - after))).build();
    }

    /** The breakdown as an event "downtime" of {@code span}, in microseconds, and the total as an attribute. */
    static void traceInto(MigrationTracing.Span span, DowntimeBreakdown d) {
        java.util.Map<String, Long> us = new java.util.LinkedHashMap<>();
        us.put("pause_us", micros(d.getPause()));
        us.put("dirty_harvest_us", micros(d.getDirtyHarvest()));
        us.put("last_pages_us", micros(d.getLastPages()));
        us.put("last_pages_count", d.getLastPagesCount());
        us.put("device_state_save_us", micros(d.getDeviceStateSave()));
        us.put("device_state_transfer_us", micros(d.getDeviceStateTransfer()));
        us.put("switchover_hops_us", micros(d.getSwitchoverHops()));
        us.put("destination_resume_us", micros(d.getDestinationResume()));
        span.event("downtime", us);
        span.set("ferry.downtime_us", us.entrySet().stream().filter(e -> e.getKey().endsWith("_us"))
                .mapToLong(java.util.Map.Entry::getValue).sum());
    }

    private static long micros(com.google.protobuf.Duration d) {
        return d.getSeconds() * 1_000_000 + d.getNanos() / 1_000;
    }
}
