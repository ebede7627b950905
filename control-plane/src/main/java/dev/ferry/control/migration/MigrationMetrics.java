package dev.ferry.control.migration;

import dev.ferry.v1.Migration;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.metrics.DoubleHistogram;
import io.opentelemetry.api.metrics.LongCounter;
import io.opentelemetry.api.metrics.Meter;
import java.util.List;
import java.util.function.LongSupplier;

/**
 * OpenTelemetry metrics of the migrations this agent runs as source: live, as each round ends (bytes sent,
 * rounds, the dirty rate of the migrations in flight) and as postcopy faults are served (their latency, on the
 * destination); and once each, when it ends: how many ended in which phase, and what the completed ones cost
 * (downtime, total time, bytes, postcopy faults). Plus the number of migrations in flight, outgoing and incoming.
 * The agent's command line chooses the exporter (Prometheus); without one this records into no-ops. The names
 * as Prometheus shows them are listed in README.md (Observability).
 */
public final class MigrationMetrics {
    static final AttributeKey<String> MODE = AttributeKey.stringKey("mode");
    static final AttributeKey<String> PHASE = AttributeKey.stringKey("phase");
    static final AttributeKey<Boolean> VERIFIED = AttributeKey.booleanKey("memory_verified");
    /** Histogram buckets in milliseconds, from sub-ms resumes to multi-minute migrations. */
    private static final List<Double> MS_BUCKETS = List.of(1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0,
            1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 60000.0, 300000.0);

    private final LongCounter ended;
    private final DoubleHistogram downtime;
    private final DoubleHistogram duration;
    private final LongCounter transferred;
    private final LongCounter faults;
    private final DoubleHistogram vcpuBlocked;
    private final LongCounter sent;
    private final LongCounter rounds;
    private final DoubleHistogram faultLatency;
    /** Fault latencies: from 50 µs (a page over a LAN) to seconds (a stalled link). */
    private static final List<Double> FAULT_MS_BUCKETS = List.of(0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0,
            50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0);

    /** Not recorded anywhere (the agent's own warm-up migrations). */
    static final MigrationMetrics NONE = new MigrationMetrics(OpenTelemetry.noop(), () -> 0, () -> 0, () -> 0);

    /**
     * Records into {@code telemetry}'s meter "dev.ferry.migration"; {@code activeOutgoing} and
     * {@code activeIncoming} count the migrations in flight whenever the exporter reads; {@code dirtyRate} sums the
     * dirty rates (bytes/s) of the outgoing ones' latest rounds.
     */
    public MigrationMetrics(OpenTelemetry telemetry, LongSupplier activeOutgoing, LongSupplier activeIncoming,
            LongSupplier dirtyRate) {
        Meter meter = telemetry.getMeter("dev.ferry.migration");
        ended = meter.counterBuilder("ferry.migrations.ended")
                .setDescription("Migrations this agent ran as source that ended, by mode, final phase and verification.")
                .build();
        downtime = meter.histogramBuilder("ferry.migration.downtime").setUnit("ms")
                .setDescription("Completed migrations: source pause to destination resume.")
                .setExplicitBucketBoundariesAdvice(MS_BUCKETS).build();
        duration = meter.histogramBuilder("ferry.migration.duration").setUnit("ms")
                .setDescription("Completed migrations: creation to completion.")
                .setExplicitBucketBoundariesAdvice(MS_BUCKETS).build();
        transferred = meter.counterBuilder("ferry.migration.transferred").setUnit("By")
                .setDescription("Page bytes sent by completed migrations.").build();
        faults = meter.counterBuilder("ferry.postcopy.faults")
                .setDescription("Postcopy page faults the destination sent to this agent's pager.").build();
        vcpuBlocked = meter.histogramBuilder("ferry.postcopy.vcpu_blocked").setUnit("ms")
                .setDescription("Completed postcopy migrations: time the vCPUs spent blocked on missing pages.")
                .setExplicitBucketBoundariesAdvice(MS_BUCKETS).build();
        sent = meter.counterBuilder("ferry.migration.sent").setUnit("By")
                .setDescription("Page bytes sent so far by outgoing migrations, as each round ends.").build();
        rounds = meter.counterBuilder("ferry.migration.rounds")
                .setDescription("Page rounds outgoing migrations finished (precopy, the last pages, postcopy pushes).")
                .build();
        meter.gaugeBuilder("ferry.migration.dirty_rate").ofLongs().setUnit("By/s")
                .setDescription("Outgoing migrations in flight: bytes/s the guests dirtied during their latest round.")
                .buildWithCallback(m -> m.record(dirtyRate.getAsLong()));
        faultLatency = meter.histogramBuilder("ferry.postcopy.fault_latency").setUnit("ms")
                .setDescription("Incoming postcopy migrations: time from a vCPU's page fault to the page in place.")
                .setExplicitBucketBoundariesAdvice(FAULT_MS_BUCKETS).build();
        AttributeKey<String> role = AttributeKey.stringKey("role");
        meter.upDownCounterBuilder("ferry.migrations.active")
                .setDescription("Migrations in flight on this agent, by role.")
                .buildWithCallback(m -> {
                    m.record(activeOutgoing.getAsLong(), Attributes.of(role, "source"));
                    m.record(activeIncoming.getAsLong(), Attributes.of(role, "destination"));
                });
    }

    /** An outgoing round of a {@code mode} migration ended, having sent {@code wireBytes}. */
    void round(dev.ferry.v1.MigrationMode mode, long wireBytes) {
        Attributes byMode = Attributes.of(MODE, mode.name());
        sent.add(wireBytes, byMode);
        rounds.add(1, byMode);
    }

    /** A vCPU of an incoming postcopy migration waited {@code nanos} for a missing page. */
    void faultServed(long nanos) {
        faultLatency.record(nanos / 1e6);
    }

    /** A source migration reached its final phase: {@code m} is its last snapshot. */
    void ended(Migration m) {
        String mode = m.getMode().name();
        ended.add(1, Attributes.of(MODE, mode, PHASE, m.getPhase().name(), VERIFIED, m.getStatistics().getMemoryVerified()));
        if (m.getPhase() != Migration.Phase.COMPLETED) {
            return;
        }
        Attributes byMode = Attributes.of(MODE, mode);
        var s = m.getStatistics();
        downtime.record(millis(s.getDowntime()), byMode);
        duration.record(millis(s.getTotalTime()), byMode);
        transferred.add(s.getTransferredBytes(), byMode);
        if (s.hasPostcopy()) {
            faults.add(s.getPostcopy().getPageFaults(), byMode);
            vcpuBlocked.record(millis(s.getPostcopy().getVcpuBlockedTime()), byMode);
        }
    }

    private static double millis(com.google.protobuf.Duration d) {
        return d.getSeconds() * 1e3 + d.getNanos() / 1e6;
    }
}
