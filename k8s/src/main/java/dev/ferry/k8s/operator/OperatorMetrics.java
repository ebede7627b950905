package dev.ferry.k8s.operator;

import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.metrics.LongCounter;
import io.opentelemetry.api.metrics.Meter;
import io.opentelemetry.api.metrics.ObservableLongGauge;
import java.util.Map;
import java.util.function.Supplier;

/**
 * The operator's own metrics (OpenTelemetry; `ferry-operator --metrics` serves them to Prometheus):
 * reconciles by outcome, the admission queue, and the handled resources by phase.
 */
final class OperatorMetrics implements AutoCloseable {
    static final AttributeKey<String> RESULT = AttributeKey.stringKey("result");
    static final AttributeKey<String> PHASE = AttributeKey.stringKey("phase");

    private final LongCounter reconciles;
    private final ObservableLongGauge queue;
    private final ObservableLongGauge running;
    private final ObservableLongGauge byPhase;

    OperatorMetrics(Meter meter, Admission admission,
            Supplier<Map<String, Long>> phases) {
        reconciles = meter.counterBuilder("ferry.operator.reconciles")
                .setDescription("Reconciles of VirtualMachineMigration resources, by result").build();
        queue = meter.gaugeBuilder("ferry.operator.queue.depth").ofLongs()
                .setDescription("Migrations waiting (phase PENDING) for a node or cluster slot")
                .buildWithCallback(m -> m.record(admission.waiting()));
        running = meter.gaugeBuilder("ferry.operator.migrations.running").ofLongs()
                .setDescription("Migrations holding a node and cluster slot")
                .buildWithCallback(m -> m.record(admission.running()));
        byPhase = meter.gaugeBuilder("ferry.operator.migrations").ofLongs()
                .setDescription("VirtualMachineMigration resources by status.phase")
                .buildWithCallback(m -> phases.get().forEach((p, n) -> m.record(n, Attributes.of(PHASE, p))));
    }

    /** {@code result}: started (taken up), queued (PENDING), failed (before the agent ran it), deleted. */
    void reconciled(String result) {
        reconciles.add(1, Attributes.of(RESULT, result));
    }

    @Override
    public void close() {
        queue.close();
        running.close();
        byPhase.close();
    }
}
