package dev.ferry.k8s.operator;

import io.fabric8.kubernetes.api.model.EventBuilder;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import java.time.Instant;
import java.time.temporal.ChronoUnit;

/**
 * Kubernetes Events (core/v1, what `kubectl describe` and `kubectl get events` show) about the
 * resources the operator handles: Normal for phase changes, Warning for failures. An event the API
 * server refuses is logged and dropped: events are a courtesy, never a reason to stop a migration.
 */
final class OperatorEvents {
    static final String NORMAL = "Normal";
    static final String WARNING = "Warning";
    static final String COMPONENT = "ferry-operator";
    private static final System.Logger LOG = System.getLogger(OperatorEvents.class.getName());

    private final KubernetesClient client;
    private final String instance;

    /** {@code instance}: this replica's identity (its pod name), recorded as the event's reporting instance. */
    OperatorEvents(KubernetesClient client, String instance) {
        this.client = client;
        this.instance = instance;
    }

    void record(GenericKubernetesResource about, String type, String reason, String message) {
        String now = Instant.now().truncatedTo(ChronoUnit.SECONDS).toString();
        // Events of cluster-scoped objects live in "default", as the API server's own do.
        String ns = about.getMetadata().getNamespace() == null ? "default" : about.getMetadata().getNamespace();
        try {
            client.v1().events().inNamespace(ns).resource(new EventBuilder()
                    .withNewMetadata().withNamespace(ns)
                    .withName(about.getMetadata().getName() + "." + Long.toHexString(System.nanoTime())).endMetadata()
                    .withNewInvolvedObject().withApiVersion(about.getApiVersion()).withKind(about.getKind())
                    .withName(about.getMetadata().getName()).withNamespace(about.getMetadata().getNamespace())
                    .withUid(about.getMetadata().getUid()).endInvolvedObject()
                    .withType(type).withReason(reason).withMessage(message)
                    .withNewSource().withComponent(COMPONENT).withHost(instance).endSource()
                    .withReportingComponent(COMPONENT).withReportingInstance(instance)
                    .withFirstTimestamp(now).withLastTimestamp(now).withCount(1).build()).create();
        } catch (KubernetesClientException e) {
            LOG.log(System.Logger.Level.WARNING, "event {0} on {1}: {2}", reason, about.getMetadata().getName(),
                    e.getMessage());
        }
    }
}
