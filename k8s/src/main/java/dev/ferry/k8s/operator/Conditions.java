package dev.ferry.k8s.operator;

import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * status.conditions as Kubernetes conventions have them (type, status True/False/Unknown, reason,
 * message, lastTransitionTime, observedGeneration): lastTransitionTime moves only when a condition's
 * status changes, so watchers can tell how long it has held.
 */
final class Conditions {
    /** The migration runs on the agents (false while Pending, and once it ended). */
    static final String RUNNING = "Running";
    /** The VM runs on the destination. */
    static final String SUCCEEDED = "Succeeded";
    /** The migration ended without moving the VM: failed, refused or cancelled. */
    static final String FAILED = "Failed";
    /** On a MigrationPolicy: whether the operator can apply it. */
    static final String ACCEPTED = "Accepted";

    private Conditions() {}

    /** One condition to set. */
    record Condition(String type, boolean status, String reason, String message) {}

    /**
     * {@code previous} with each of {@code updates} set: kept in place (and its lastTransitionTime kept)
     * when its status is unchanged, otherwise stamped {@code now}. Conditions not updated are kept as they are.
     */
    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> merge(Object previous, List<Condition> updates, Long generation, Instant now) {
        List<Map<String, Object>> out = new ArrayList<>();
        if (previous instanceof List<?> l) {
            for (Object o : l) {
                if (o instanceof Map<?, ?> m) {
                    out.add(new LinkedHashMap<>((Map<String, Object>) m));
                }
            }
        }
        String stamp = now.truncatedTo(ChronoUnit.SECONDS).toString(); // RFC 3339, as metav1.Time
        for (Condition c : updates) {
            Map<String, Object> old = out.stream().filter(m -> c.type().equals(m.get("type"))).findFirst().orElse(null);
            String status = c.status() ? "True" : "False";
            Map<String, Object> n = new LinkedHashMap<>();
            n.put("type", c.type());
            n.put("status", status);
            n.put("reason", c.reason());
            n.put("message", c.message() == null ? "" : c.message());
            n.put("lastTransitionTime", old != null && status.equals(old.get("status")) && old.get("lastTransitionTime") != null
                    ? old.get("lastTransitionTime") : stamp);
            if (generation != null) {
                n.put("observedGeneration", generation);
            }
            if (old == null) {
                out.add(n);
            } else {
                out.set(out.indexOf(old), n);
            }
        }
        return out;
    }

    /** The condition of {@code type} in {@code status}, or an empty map. */
    @SuppressWarnings("unchecked")
    static Map<String, Object> find(Map<String, Object> status, String type) {
        if (status.get("conditions") instanceof List<?> l) {
            for (Object o : l) {
                if (o instanceof Map<?, ?> m && type.equals(m.get("type"))) {
                    return (Map<String, Object>) m;
                }
            }
        }
        return Map.of();
    }

    /**
     * The Running/Succeeded/Failed triple for a migration in {@code phase}; {@code reason} is the
     * CamelCase reason of the phase (e.g. NodeLimitReached while Pending, AgentRefused when failed).
     */
    static List<Condition> forPhase(String phase, String reason, String message) {
        return switch (phase) {
            case "COMPLETED" -> List.of(new Condition(RUNNING, false, reason, message),
                    new Condition(SUCCEEDED, true, reason, message), new Condition(FAILED, false, reason, message));
            case "FAILED", "CANCELLED" -> List.of(new Condition(RUNNING, false, reason, message),
                    new Condition(SUCCEEDED, false, reason, message), new Condition(FAILED, true, reason, message));
            case VirtualMachineMigrations.PENDING -> List.of(new Condition(RUNNING, false, reason, message),
                    new Condition(SUCCEEDED, false, reason, message), new Condition(FAILED, false, reason, message));
            default -> List.of(new Condition(RUNNING, true, reason, message),
                    new Condition(SUCCEEDED, false, reason, message), new Condition(FAILED, false, reason, message));
        };
    }
}
