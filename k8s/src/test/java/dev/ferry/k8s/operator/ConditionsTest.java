package dev.ferry.k8s.operator;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ConditionsTest {
    @Test
    void lastTransitionTimeMovesOnlyWhenTheStatusChanges() {
        Instant t0 = Instant.parse("2026-01-01T00:00:00Z");
        var pending = Conditions.merge(null, Conditions.forPhase("PENDING", "NodeLimitReached", "waiting"), 1L, t0);
        var precopy = Conditions.merge(pending, Conditions.forPhase("PRECOPY", "Migrating", "phase PRECOPY"), 2L,
                t0.plusSeconds(5));
        var done = Conditions.merge(precopy, Conditions.forPhase("COMPLETED", "Succeeded", "done"), 2L, t0.plusSeconds(9));
        Map<String, Object> running = find(precopy, "Running");
        assertEquals("True", running.get("status"));
        assertEquals("2026-01-01T00:00:05Z", running.get("lastTransitionTime"));
        assertEquals(2L, running.get("observedGeneration"));
        assertEquals("2026-01-01T00:00:00Z", find(precopy, "Failed").get("lastTransitionTime"), "still False: kept");
        assertEquals("Migrating", find(precopy, "Failed").get("reason"), "reason and message follow the phase");
        assertEquals("True", find(done, "Succeeded").get("status"));
        assertEquals("2026-01-01T00:00:09Z", find(done, "Succeeded").get("lastTransitionTime"));
        assertEquals("False", find(done, "Running").get("status"));
        assertEquals(3, done.size());
    }

    private static Map<String, Object> find(List<Map<String, Object>> conditions, String type) {
        return Conditions.find(Map.of("conditions", conditions), type);
    }
}
