package dev.ferry.k8s.operator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import org.junit.jupiter.api.Test;

class AdmissionTest {
    private static List<String> uids(List<Admission.Ticket> t) {
        return t.stream().map(Admission.Ticket::uid).toList();
    }

    @Test
    void aThirdMigrationOutOfANodeWaitsForOneOfTheFirstTwo() {
        Admission a = new Admission(2, 5);
        assertEquals(List.of("m1"), uids(a.offer("m1", "node-a", "2026-01-01T00:00:01Z")));
        assertEquals(List.of("m2"), uids(a.offer("m2", "node-a", "2026-01-01T00:00:02Z")));
        assertEquals(List.of(), uids(a.offer("m3", "node-a", "2026-01-01T00:00:03Z")));
        assertEquals("NodeLimitReached", a.why("m3").orElseThrow().reason());
        assertEquals(List.of("x1"), uids(a.offer("x1", "node-b", "2026-01-01T00:00:04Z")), "another node is not held back");
        assertEquals(1, a.waiting());
        assertEquals(List.of("m3"), uids(a.release("m2")));
        assertEquals(3, a.running());
    }

    @Test
    void theClusterLimitAdmitsInCreationOrderNotArrivalOrder() {
        Admission a = new Admission(2, 2);
        a.offer("r1", "n1", "2026-01-01T00:00:01Z");
        a.offer("r2", "n2", "2026-01-01T00:00:01Z");
        assertEquals(List.of(), uids(a.offer("late", "n3", "2026-01-01T00:00:09Z")));
        assertEquals(List.of(), uids(a.offer("early", "n4", "2026-01-01T00:00:05Z"))); // seen later, created earlier
        assertEquals("ClusterLimitReached", a.why("late").orElseThrow().reason());
        assertEquals(List.of("early"), uids(a.release("r1")));
        assertEquals(List.of("late"), uids(a.release("r2")));
    }

    @Test
    void migrationsFoundRunningAfterARestartCountWhateverTheLimits() {
        Admission a = new Admission(1, 5);
        a.resume("old1", "n1");
        a.resume("old2", "n1");
        assertEquals(List.of(), uids(a.offer("new", "n1", "2026-01-01T00:00:01Z")));
        assertEquals(List.of(), uids(a.release("old1")), "still one over the limit");
        assertEquals(List.of("new"), uids(a.release("old2")));
        assertEquals(List.of(), uids(a.release("never-seen")));
    }

    @Test
    void limitsBelowOneAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> new Admission(0, 5));
        assertThrows(IllegalArgumentException.class, () -> new Admission(2, 0));
    }
}
