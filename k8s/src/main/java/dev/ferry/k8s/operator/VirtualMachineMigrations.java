package dev.ferry.k8s.operator;

import com.google.protobuf.Duration;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationErrors;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.client.dsl.base.ResourceDefinitionContext;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The VirtualMachineMigration resource (manifests/crd-virtualmachinemigration.yaml) as the operator
 * reads and writes it: spec to a ferry.v1 CreateMigration, a ferry.v1 Migration to status.
 */
final class VirtualMachineMigrations {
    static final ResourceDefinitionContext CONTEXT = new ResourceDefinitionContext.Builder()
            .withGroup("ferry.dev").withVersion("v1alpha1").withKind("VirtualMachineMigration")
            .withPlural("virtualmachinemigrations").withNamespaced(true).build();
    /**
     * The operator's own phase before the agent has the migration: waiting for a slot under the per-node
     * or per-cluster limit (the Running condition's reason says which). Uppercase like the agent's phases.
     */
    static final String PENDING = "PENDING";
    private static final Pattern DURATION = Pattern.compile("(\\d+(?:\\.\\d+)?)(ns|us|µs|ms|s|m|h)");

    private VirtualMachineMigrations() {}

    @SuppressWarnings("unchecked")
    static Map<String, Object> section(GenericKubernetesResource r, String name) {
        Object o = r.getAdditionalProperties().get(name);
        return o instanceof Map<?, ?> m ? (Map<String, Object>) m : Map.of();
    }

    static String string(Map<String, Object> m, String key) {
        Object o = m.get(key);
        return o == null ? "" : o.toString();
    }

    /** The agent's ID for this resource's migration: stable for the object, unique across re-creations. */
    static String migrationId(GenericKubernetesResource r) {
        return "vmm-" + r.getMetadata().getUid().toLowerCase();
    }

    static MigrationMode mode(Map<String, Object> spec) {
        String m = string(spec, "mode");
        return m.isEmpty() ? MigrationMode.PRECOPY : MigrationMode.valueOf(m);
    }

    /** spec.policy as a ferry.v1 MigrationPolicy; unset fields keep the agent's defaults. */
    @SuppressWarnings("unchecked")
    static MigrationPolicy policy(Map<String, Object> spec) {
        Map<String, Object> p = spec.get("policy") instanceof Map<?, ?> m ? (Map<String, Object>) m : Map.of();
        MigrationPolicy.Builder b = MigrationPolicy.newBuilder();
        if (p.containsKey("maxDowntime")) {
            b.setMaxDowntime(duration(string(p, "maxDowntime")));
        }
        if (p.containsKey("maxTotalTime")) {
            b.setMaxTotalTime(duration(string(p, "maxTotalTime")));
        }
        if (p.get("bandwidthLimitBytesPerSecond") instanceof Number n) {
            b.setBandwidthLimitBytesPerSecond(n.longValue());
        }
        if (p.get("maxRounds") instanceof Number n) {
            b.setMaxRounds(n.intValue());
        }
        if (p.get("dataStreams") instanceof Number n) {
            b.setDataStreams(n.intValue());
        }
        if (p.containsKey("onNoConvergence")) {
            b.setOnNoConvergence(MigrationPolicy.NoConvergenceAction.valueOf(string(p, "onNoConvergence")));
        }
        if (p.get("verifyMemory") instanceof Boolean v) {
            b.setVerifyMemory(v);
        }
        if (p.containsKey("pageCompression")) {
            b.setPageCompression(MigrationPolicy.PageCompression.valueOf(string(p, "pageCompression")));
        }
        if (p.get("autoConverge") instanceof Map<?, ?> ac) {
            dev.ferry.v1.AutoConverge.Builder a = dev.ferry.v1.AutoConverge.newBuilder();
            if (ac.get("enabled") instanceof Boolean e) {
                a.setEnabled(e);
            }
            if (ac.get("initialPercent") instanceof Number n) {
                a.setInitialPercent(n.intValue());
            }
            if (ac.get("incrementPercent") instanceof Number n) {
                a.setIncrementPercent(n.intValue());
            }
            if (ac.get("maxPercent") instanceof Number n) {
                a.setMaxPercent(n.intValue());
            }
            b.setAutoConverge(a);
        }
        return b.build();
    }

    /** "300ms", "1.5s", "2m": the CRD's duration strings. */
    static Duration duration(String s) {
        Matcher m = DURATION.matcher(s.trim());
        if (!m.matches()) {
            throw new IllegalArgumentException("'" + s + "' is not a duration like 300ms, 2s or 1m");
        }
        double nanosPerUnit = switch (m.group(2)) {
            case "ns" -> 1;
            case "us", "µs" -> 1e3;
            case "ms" -> 1e6;
            case "s" -> 1e9;
            case "m" -> 60e9;
            default -> 3600e9;
        };
        long nanos = Math.round(Double.parseDouble(m.group(1)) * nanosPerUnit);
        return Duration.newBuilder().setSeconds(nanos / 1_000_000_000L).setNanos((int) (nanos % 1_000_000_000L)).build();
    }

    static String format(Duration d) {
        return String.format("%.1fms", d.getSeconds() * 1e3 + d.getNanos() / 1e6);
    }

    /** status from the agent's view of the migration. */
    static Map<String, Object> status(String sourceNode, Migration m) {
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("migration", m.getName());
        s.put("sourceNode", sourceNode);
        s.put("phase", m.getPhase().name());
        s.put("round", m.getProgress().getRound());
        s.put("bytesSent", m.getProgress().getBytesSent());
        s.put("bytesRemaining", m.getProgress().getBytesRemaining());
        if (m.hasStatistics()) {
            s.put("downtime", format(m.getStatistics().getDowntime()));
            s.put("guestPause", format(m.getStatistics().getGuestPause()));
            s.put("memoryVerified", m.getStatistics().getMemoryVerified());
        }
        if (!m.getError().getMessage().isEmpty()) {
            s.put("message", MigrationErrors.summary(m));
            s.put("errorCode", MigrationErrors.code(m).name());
            MigrationErrors.step(m).ifPresent(step -> s.put("failedStep", step));
            s.put("retryable", MigrationErrors.retryable(MigrationErrors.code(m)));
        }
        return s;
    }

    /** status of a migration the operator could not start. */
    static Map<String, Object> failed(String message) {
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("phase", Migration.Phase.FAILED.name());
        s.put("message", message);
        return s;
    }

    static boolean terminal(String phase) {
        return phase.equals("COMPLETED") || phase.equals("FAILED") || phase.equals("CANCELLED");
    }
}
