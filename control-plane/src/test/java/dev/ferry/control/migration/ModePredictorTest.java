package dev.ferry.control.migration;

import static dev.ferry.control.migration.Fixtures.MiB;
import static dev.ferry.control.migration.Fixtures.round;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.control.migration.Decision.Action;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/** Mode AUTO: what it predicts for each mode from the first round, and what it picks. */
class ModePredictorTest {
    private static final Duration OVERHEAD = Duration.ofMillis(20);
    private static final ConvergencePolicy AUTO = ConvergencePolicy.of(MigrationMode.AUTO, MigrationPolicy.newBuilder()
            .setMaxDowntime(com.google.protobuf.Duration.newBuilder().setNanos(50_000_000)).build());

    /** A first round of 1 s that sent {@code sentMib} at {@code rateMib}/s while the guest dirtied {@code dirtyMib}/s. */
    private static ModePredictor.FirstRound first(long sentMib, long rateMib, long dirtyMib) {
        return new ModePredictor.FirstRound(Duration.ofSeconds(1), Duration.ofSeconds(1), sentMib * MiB, dirtyMib * MiB,
                rateMib * MiB, dirtyMib * MiB, 0);
    }

    @Test
    void aQuietGuestGoesByPlainPrecopyAndTheArithmeticIsTheGeometricSeries() {
        // 100 MiB/s link, 10 MiB/s dirtying: 10 MiB left -> 100 ms -> 1 MiB -> 10 ms + 20 ms overhead = 30 ms <= 50 ms
        ModePredictor.Choice c = ModePredictor.choose(first(100, 100, 10), AUTO, OVERHEAD);
        assertEquals(MigrationMode.PRECOPY, c.mode());
        assertFalse(c.autoConverge());
        assertEquals(Duration.ofMillis(30), c.picked().downtime());
        assertEquals(Duration.ofMillis(1000 + 100 + 30), c.picked().total());
        assertTrue(c.reason().startsWith("precopy meets max_downtime"), c.reason());
    }

    @Test
    void aGuestFasterThanTheLinkThatThrottlingCanSlowGetsAutoConverge() {
        // 100 MiB/s link, 150 MiB/s dirtying into a large working set: plain precopy never shrinks the dirty set.
        ModePredictor.FirstRound r = first(1000, 100, 150);
        assertFalse(ModePredictor.precopy(r, AUTO, OVERHEAD, null).converges());
        ModePredictor.Choice c = ModePredictor.choose(r, AUTO, OVERHEAD);
        assertEquals(MigrationMode.PRECOPY, c.mode());
        assertTrue(c.autoConverge(), c.reason());
        assertTrue(c.picked().downtime().compareTo(Duration.ofMillis(50)) <= 0);
    }

    @Test
    void whenNothingElseMeetsMaxDowntimePostcopyStartsNow() {
        ConvergencePolicy fewRounds = ConvergencePolicy.of(MigrationMode.AUTO, MigrationPolicy.newBuilder().setMaxRounds(3)
                .setMaxDowntime(com.google.protobuf.Duration.newBuilder().setNanos(50_000_000)).build());
        ModePredictor.Choice c = ModePredictor.choose(first(1000, 100, 400), fewRounds, OVERHEAD);
        assertEquals(MigrationMode.POSTCOPY, c.mode());
        assertEquals(OVERHEAD, c.picked().downtime());
        assertEquals(Duration.ofMillis(1000 + 20 + 4000), c.picked().total(), "400 MiB stale at 100 MiB/s");
    }

    @Test
    void thePlannerActsOnTheChoiceAfterRoundOne() {
        PrecopyPlanner quick = new PrecopyPlanner(ConvergencePolicy.of(MigrationMode.AUTO, MigrationPolicy.newBuilder()
                .setMaxRounds(3).build()));
        quick.recordRound(round(1000 * MiB, 900 * MiB, 1000));
        Decision d = quick.decide(Duration.ofSeconds(1), false);
        assertEquals(Action.SWITCH_TO_POSTCOPY, d.action());
        assertTrue(d.reason().startsWith("mode AUTO: "), d.reason());
        assertEquals(MigrationMode.POSTCOPY, quick.modeChoice().orElseThrow().mode());

        PrecopyPlanner quiet = new PrecopyPlanner(AUTO);
        quiet.recordRound(round(100 * MiB, 1 * MiB, 1000));
        assertTrue(quiet.decide(Duration.ofSeconds(1), false).action() != Action.SWITCH_TO_POSTCOPY,
                "precopy goes on as precopy");
        assertEquals(MigrationMode.PRECOPY, quiet.modeChoice().orElseThrow().mode());

        assertTrue(new PrecopyPlanner(ConvergencePolicy.defaults(MigrationMode.HYBRID)).modeChoice().isEmpty());
        assertEquals(MigrationMode.AUTO, AUTO.requestedMode());
        assertEquals(MigrationMode.HYBRID, AUTO.mode());
    }

    @Test
    void aGuestThatRewritesPagesIsModelledFromTheSampleAndItsWorkingSet() {
        // Writes 100 MiB/s at random over 64 MiB: in a 1 s round it dirties 64 (1 - e^-100/64) = 50.5 MiB.
        double w = 100.0 * MiB;
        double set = 64.0 * MiB;
        long seen = Math.round(ModePredictor.dirtied(w, 1, set));
        assertEquals(50.5, seen / (double) MiB, 0.1);
        ModePredictor.FirstRound r = new ModePredictor.FirstRound(Duration.ofSeconds(1), Duration.ofSeconds(1), 200 * MiB,
                seen, 200 * MiB, seen, (long) w);
        assertEquals(set, ModePredictor.workingSet(r, w), MiB / 100.0, "solved back from round 1");
        // Without the sample the rounds' distinct pages are all there is: no saturation assumed.
        assertTrue(Double.isInfinite(ModePredictor.workingSet(r, seen)));
        // A 10 ms round then dirties about the full write rate's worth (1 MiB), not round 1's average (0.5 MiB).
        assertEquals(0.99, ModePredictor.dirtied(w, 0.01, ModePredictor.workingSet(r, w)) / MiB, 0.01);
    }
}
