package dev.ferry.control.migration;

import static dev.ferry.control.migration.Fixtures.GiB;
import static dev.ferry.control.migration.Fixtures.MiB;
import static dev.ferry.control.migration.Fixtures.round;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.control.migration.Decision.Action;
import dev.ferry.control.migration.PrecopyPlanner.Estimates;
import dev.ferry.control.migration.PrecopyPlanner.Tuning;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.MigrationPolicy.NoConvergenceAction;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class PrecopyPlannerTest {

    private static final Duration T0 = Duration.ZERO;

    private static PrecopyPlanner planner(MigrationMode mode, MigrationPolicy policy) {
        return new PrecopyPlanner(ConvergencePolicy.of(mode, policy));
    }

    private static PrecopyPlanner planner(MigrationMode mode) {
        return planner(mode, MigrationPolicy.getDefaultInstance());
    }

    /** A planner that stops at the first round whose expected downtime fits, as QEMU does. */
    private static PrecopyPlanner firstFit(MigrationMode mode, MigrationPolicy policy) {
        return new PrecopyPlanner(ConvergencePolicy.of(mode, policy), Tuning.DEFAULT.withLowerDowntimeGain(0));
    }

    /** Runs rounds until a decision other than CONTINUE_PRECOPY, feeding {@code next} for each round. */
    private static List<Decision> runUntilDecided(PrecopyPlanner p, java.util.function.IntFunction<RoundStats> next) {
        List<Decision> out = new ArrayList<>();
        for (int i = 1; i <= 1000; i++) {
            p.recordRound(next.apply(i));
            Decision d = p.decide(T0, false);
            out.add(d);
            if (d.action() != Action.CONTINUE_PRECOPY) {
                return out;
            }
        }
        throw new AssertionError("no decision in 1000 rounds");
    }

    @Test
    void idleGuestConvergesAfterOneRound() {
        PrecopyPlanner p = planner(MigrationMode.PRECOPY);
        Estimates e = p.recordRound(round(GiB, 0, 1000));
        assertEquals(GiB, e.transferRateBytesPerSecond());
        assertEquals(0, e.dirtyRateBytesPerSecond());
        assertEquals(Duration.ofMillis(20), e.expectedDowntime().orElseThrow(), "nothing remains: just the overhead");
        Decision d = p.decide(T0, false);
        assertEquals(Action.STOP_AND_COPY, d.action());
        assertTrue(d.converged());
        assertTrue(d.reason().contains("converged after round 1"), d.reason());
    }

    @Test
    void lightlyDirtyingGuestConvergesAndGoesOnWhileAnotherRoundLowersTheDowntime() {
        PrecopyPlanner p = planner(MigrationMode.PRECOPY);
        // Round 1: all of 1 GiB in 1 s while the guest dirties 400 MiB: 400/1024 s + 20 ms > 300 ms.
        p.recordRound(round(GiB, 400 * MiB, 1000));
        Decision d1 = p.decide(T0, false);
        assertEquals(Action.CONTINUE_PRECOPY, d1.action(), d1.reason());
        assertEquals(Duration.ofNanos(390_625_000).plusMillis(20), d1.expectedDowntime().orElseThrow());
        // Round 2: those 400 MiB in 400 ms (1000 MiB/s), while 40 MiB more get dirtied: 40 ms + 20 ms fits, but the
        // dirty set shrank to a tenth, so one more round should leave 4 ms of pages: 24 ms, well under 60.
        p.recordRound(round(400 * MiB, 40 * MiB, 400));
        Decision d2 = p.decide(T0, false);
        assertEquals(Action.CONTINUE_PRECOPY, d2.action(), d2.reason());
        assertEquals(Duration.ofMillis(60), d2.expectedDowntime().orElseThrow());
        assertTrue(d2.reason().contains("one more round should bring it to 24"), d2.reason());
        // Round 3: 40 MiB in 40 ms, 4 MiB dirtied: 24 ms; another round would give 20.4 ms, less than a fifth lower.
        p.recordRound(round(40 * MiB, 4 * MiB, 40));
        Decision d3 = p.decide(T0, false);
        assertEquals(Action.STOP_AND_COPY, d3.action(), d3.reason());
        assertTrue(d3.converged());
        assertEquals(Duration.ofMillis(24), d3.expectedDowntime().orElseThrow());
        assertEquals(3, p.rounds());
    }

    @Test
    void withoutTheGainItStopsAtTheFirstFit() {
        PrecopyPlanner p = firstFit(MigrationMode.PRECOPY, MigrationPolicy.getDefaultInstance());
        p.recordRound(round(GiB, 400 * MiB, 1000));
        p.recordRound(round(400 * MiB, 40 * MiB, 400));
        Decision d = p.decide(T0, false);
        assertEquals(Action.STOP_AND_COPY, d.action(), d.reason());
        assertEquals(Duration.ofMillis(60), d.expectedDowntime().orElseThrow());
    }

    @Test
    void noExtraRoundWhenItWouldReachMaxRoundsOrTheDirtySetStopsShrinking() {
        // Fits after round 1 with 40 ms of pages, but max_rounds 2 leaves no room for an extra round before the last.
        PrecopyPlanner capped = planner(MigrationMode.PRECOPY, MigrationPolicy.newBuilder().setMaxRounds(2).build());
        capped.recordRound(round(GiB, 40 * MiB, 1000));
        assertEquals(Action.STOP_AND_COPY, capped.decide(T0, false).action());
        // The guest dirtied as much as the round sent: another round would leave as much again.
        PrecopyPlanner flat = planner(MigrationMode.PRECOPY);
        flat.recordRound(round(GiB, 512 * MiB, 1000));
        flat.recordRound(round(40 * MiB, 40 * MiB, 40));
        Decision d = flat.decide(T0, false);
        assertEquals(Action.STOP_AND_COPY, d.action(), d.reason());
    }

    @ParameterizedTest(name = "{0} pages remain")
    @CsvSource({"279, STOP_AND_COPY", "280, STOP_AND_COPY", "281, CONTINUE_PRECOPY"})
    void theLimitItselfCountsAsConverged(long remainingPages, Action expected) {
        // 1000 pages per second: 280 pages take 280 ms, plus 20 ms overhead = exactly max_downtime 300 ms.
        PrecopyPlanner p = firstFit(MigrationMode.PRECOPY, MigrationPolicy.getDefaultInstance());
        Estimates e = p.recordRound(new RoundStats(1000, 0, remainingPages, Duration.ofSeconds(1)));
        assertEquals(Duration.ofMillis(remainingPages + 20), e.expectedDowntime().orElseThrow());
        assertEquals(expected, p.decide(T0, false).action());
    }

    @ParameterizedTest(name = "{0} {1}")
    @CsvSource({
        "PRECOPY, NO_CONVERGENCE_ACTION_UNSPECIFIED, FAIL",
        "PRECOPY, FAIL, FAIL",
        "PRECOPY, CONTINUE, STOP_AND_COPY",
        "HYBRID, NO_CONVERGENCE_ACTION_UNSPECIFIED, SWITCH_TO_POSTCOPY",
        "HYBRID, SWITCH_TO_POSTCOPY, SWITCH_TO_POSTCOPY",
        "HYBRID, FAIL, FAIL",
        "HYBRID, CONTINUE, STOP_AND_COPY",
    })
    void dirtyRateAboveTheBandwidthLimitNeverConvergesAndEndsPerPolicy(MigrationMode mode,
                                                                       NoConvergenceAction action,
                                                                       Action expected) {
        // The link would do 1 GiB/s but the policy caps it at 100 MiB/s; the guest dirties 150 MiB/s.
        PrecopyPlanner p = planner(mode, MigrationPolicy.newBuilder()
                .setBandwidthLimitBytesPerSecond(100 * MiB).setOnNoConvergence(action).build());
        List<Decision> ds = runUntilDecided(p, i -> round(100 * MiB, 150 * MiB, 1000));
        assertEquals(Tuning.DEFAULT_STALL_ROUNDS, ds.size(), "decided after N = 3 stalled rounds");
        Decision last = ds.get(ds.size() - 1);
        assertEquals(expected, last.action(), last.reason());
        assertFalse(last.converged());
        assertTrue(last.reason().contains("at least as fast as it was sent for 3 rounds"), last.reason());
        assertEquals(100 * MiB, p.estimates().transferRateBytesPerSecond());
        assertEquals(150 * MiB, p.estimates().dirtyRateBytesPerSecond());
    }

    @Test
    void withStallDetectionOffANonConvergingGuestRunsUntilMaxRounds() {
        PrecopyPlanner p = new PrecopyPlanner(ConvergencePolicy.defaults(MigrationMode.PRECOPY),
                Tuning.DEFAULT.withStallRounds(0));
        List<Decision> ds = runUntilDecided(p, i -> round(GiB, 2 * GiB, 1000));
        assertEquals(ConvergencePolicy.DEFAULT_MAX_ROUNDS, ds.size());
        assertEquals(Action.FAIL, ds.get(ds.size() - 1).action());
        assertTrue(ds.get(ds.size() - 1).reason().contains("max_rounds 30 reached"));
    }

    @Test
    void maxRoundsEndsASlowlyConvergingPrecopy() {
        // Dirty rate 90% of the transfer rate: the dirty set shrinks by 10% a round, far too slowly.
        PrecopyPlanner p = planner(MigrationMode.HYBRID, MigrationPolicy.newBuilder().setMaxRounds(5).build());
        long[] remaining = {GiB};
        List<Decision> ds = runUntilDecided(p, i -> {
            long sent = remaining[0];
            long millis = sent * 1000 / GiB;
            long dirtied = sent * 9 / 10 / 4096 * 4096;
            remaining[0] = dirtied;
            return round(sent, dirtied, millis);
        });
        assertEquals(5, ds.size());
        ds.subList(0, 4).forEach(d -> assertEquals(Action.CONTINUE_PRECOPY, d.action(), d.reason()));
        assertEquals(Action.SWITCH_TO_POSTCOPY, ds.get(4).action());
        assertTrue(ds.get(4).reason().contains("max_rounds 5 reached"), ds.get(4).reason());
        assertEquals(0, p.estimates().stalledRounds());
    }

    @Test
    void maxTotalTimeCountsFromCreateTimeAsPassedIn() {
        PrecopyPlanner p = planner(MigrationMode.PRECOPY, MigrationPolicy.newBuilder()
                .setMaxTotalTime(com.google.protobuf.Duration.newBuilder().setSeconds(60)).build());
        p.recordRound(round(GiB, 512 * MiB, 1000));
        assertEquals(Action.CONTINUE_PRECOPY, p.decide(Duration.ofSeconds(59), false).action());
        Decision d = p.decide(Duration.ofSeconds(60), false);
        assertEquals(Action.FAIL, d.action());
        assertTrue(d.reason().contains("max_total_time 60.000 s reached"), d.reason());
        // A converged round still stops and copies after the limit: the limit only ends precopy that does not.
        p.recordRound(round(512 * MiB, 0, 500));
        assertEquals(Action.STOP_AND_COPY, p.decide(Duration.ofSeconds(61), false).action());
    }

    @Test
    void bandwidthLimitLowersTheTransferRateAndRaisesTheExpectedDowntime() {
        RoundStats r = round(GiB, 50 * MiB, 1000); // measured 1 GiB/s; 50 MiB remain
        PrecopyPlanner unlimited = firstFit(MigrationMode.PRECOPY, MigrationPolicy.getDefaultInstance());
        PrecopyPlanner limited = firstFit(MigrationMode.PRECOPY,
                MigrationPolicy.newBuilder().setBandwidthLimitBytesPerSecond(100 * MiB).build());
        Estimates u = unlimited.recordRound(r);
        Estimates l = limited.recordRound(r);
        assertEquals(GiB, u.transferRateBytesPerSecond());
        assertEquals(100 * MiB, l.transferRateBytesPerSecond());
        assertEquals(Duration.ofNanos(48_828_125).plusMillis(20), u.expectedDowntime().orElseThrow());
        assertEquals(Duration.ofMillis(520), l.expectedDowntime().orElseThrow());
        assertEquals(Action.STOP_AND_COPY, unlimited.decide(T0, false).action());
        assertEquals(Action.CONTINUE_PRECOPY, limited.decide(T0, false).action());
    }

    @Test
    void tinyRoundsDoNotReplaceAKnownTransferRate() {
        PrecopyPlanner p = planner(MigrationMode.PRECOPY);
        p.recordRound(round(GiB, 512 * MiB, 1000));
        // 8 pages that took 5 ms: 6.5 MB/s, dominated by latency.
        Estimates e = p.recordRound(round(8 * 4096, 4096, 5));
        assertEquals(GiB, e.transferRateBytesPerSecond());
        assertEquals(4096 * 200, e.dirtyRateBytesPerSecond(), "the dirty rate is still sampled");
    }

    @Test
    void theFirstRoundIsASampleWhateverItsSize() {
        PrecopyPlanner p = planner(MigrationMode.PRECOPY);
        Estimates e = p.recordRound(round(8 * 4096, 0, 1));
        assertEquals(8 * 4096 * 1000, e.transferRateBytesPerSecond());
    }

    @Test
    void smoothingBlendsRoundsWhenConfigured() {
        PrecopyPlanner p = new PrecopyPlanner(ConvergencePolicy.defaults(MigrationMode.PRECOPY),
                Tuning.DEFAULT.withRateSmoothing(0.5));
        p.recordRound(round(GiB, 0, 1000));
        Estimates e = p.recordRound(round(GiB, 0, 500)); // 2 GiB/s sample
        assertEquals(GiB * 3 / 2, e.transferRateBytesPerSecond());
        PrecopyPlanner last = planner(MigrationMode.PRECOPY);
        last.recordRound(round(GiB, 0, 1000));
        assertEquals(2 * GiB, last.recordRound(round(GiB, 0, 500)).transferRateBytesPerSecond(),
                "the default uses the last round alone");
    }

    @Test
    void downtimeIsUnknownWhileNoDataHasBeenMeasured() {
        // A fresh guest: every page of round 1 went as a zero range, yet 1000 pages got dirtied.
        PrecopyPlanner p = planner(MigrationMode.PRECOPY);
        Estimates e = p.recordRound(new RoundStats(0, Fixtures.pages(GiB), 1000, Duration.ofMillis(200)));
        assertEquals(0, e.transferRateBytesPerSecond());
        assertTrue(e.expectedDowntime().isEmpty());
        Decision d = p.decide(T0, false);
        assertEquals(Action.CONTINUE_PRECOPY, d.action());
        assertTrue(d.reason().contains("unknown"), d.reason());
    }

    @Test
    void aManualSwitchWinsOverConvergenceButOnlyInHybrid() {
        PrecopyPlanner hybrid = planner(MigrationMode.HYBRID);
        hybrid.recordRound(round(GiB, 0, 1000));
        assertEquals(Action.SWITCH_TO_POSTCOPY, hybrid.decide(T0, true).action());
        PrecopyPlanner precopy = planner(MigrationMode.PRECOPY);
        precopy.recordRound(round(GiB, 0, 1000));
        assertThrows(IllegalStateException.class, () -> precopy.decide(T0, true));
    }

    @Test
    void decidingBeforeAnyRoundIsAnError() {
        assertThrows(IllegalStateException.class, () -> planner(MigrationMode.PRECOPY).decide(T0, false));
    }

    @Test
    void dirtyRateEqualToTheTransferRateIsAStall() {
        // remaining stays at 1 GiB forever: round k+1 lasts as long as round k and leaves as much behind.
        PrecopyPlanner p = planner(MigrationMode.PRECOPY);
        List<Decision> ds = runUntilDecided(p, i -> round(GiB, GiB, 1000));
        assertEquals(3, ds.size());
        assertEquals(Action.FAIL, ds.get(2).action());
        // Just below the transfer rate is not a stall (max_rounds ends that one instead).
        PrecopyPlanner q = planner(MigrationMode.PRECOPY);
        q.recordRound(round(GiB, GiB - 4096, 1000));
        assertEquals(0, q.estimates().stalledRounds());
    }

    @Test
    void aBurstIsNotAStallUnlessItLastsNRounds() {
        PrecopyPlanner p = planner(MigrationMode.PRECOPY);
        p.recordRound(round(GiB, 2 * GiB, 1000));
        p.recordRound(round(GiB, 2 * GiB, 1000));
        assertEquals(2, p.estimates().stalledRounds());
        p.recordRound(round(GiB, 512 * MiB, 1000)); // the guest calmed down
        assertEquals(0, p.estimates().stalledRounds());
        assertEquals(Action.CONTINUE_PRECOPY, p.decide(T0, false).action());
    }

    /**
     * Property test over random policies and round sequences (seeded, so a failure reproduces): the rules hold
     * for every decision.
     */
    @Test
    void decisionsObeyThePolicyForRandomRoundSequences() {
        for (long seed = 0; seed < 500; seed++) {
            Random rnd = new Random(seed);
            MigrationMode mode = rnd.nextBoolean() ? MigrationMode.PRECOPY : MigrationMode.HYBRID;
            NoConvergenceAction[] actions = mode == MigrationMode.HYBRID ? NoConvergenceAction.values()
                    : new NoConvergenceAction[] {NoConvergenceAction.NO_CONVERGENCE_ACTION_UNSPECIFIED,
                        NoConvergenceAction.CONTINUE, NoConvergenceAction.FAIL};
            NoConvergenceAction action = actions[rnd.nextInt(actions.length - (mode == MigrationMode.HYBRID ? 1 : 0))];
            int maxRounds = 1 + rnd.nextInt(40);
            long limit = rnd.nextBoolean() ? 0 : (1 + rnd.nextInt(2000)) * MiB;
            long maxTotalSeconds = rnd.nextBoolean() ? 0 : 1 + rnd.nextInt(100);
            ConvergencePolicy policy = ConvergencePolicy.of(mode, MigrationPolicy.newBuilder()
                    .setMaxRounds(maxRounds).setBandwidthLimitBytesPerSecond(limit).setOnNoConvergence(action)
                    .setMaxTotalTime(com.google.protobuf.Duration.newBuilder().setSeconds(maxTotalSeconds))
                    .setMaxDowntime(com.google.protobuf.Duration.newBuilder()
                            .setNanos((1 + rnd.nextInt(999)) * 1_000_000))
                    .build());
            PrecopyPlanner p = new PrecopyPlanner(policy);
            String ctx = "seed " + seed + ", " + policy;
            Duration since = Duration.ZERO;
            for (int round = 1; ; round++) {
                long elapsedMs = 1 + rnd.nextInt(5000);
                long sent = (long) rnd.nextInt(300_000) * 4096;
                long dirtied = (long) rnd.nextInt(rnd.nextBoolean() ? 100 : 300_000) * 4096;
                since = since.plusMillis(elapsedMs);
                Estimates e = p.recordRound(round(sent, dirtied, elapsedMs));
                if (limit > 0) {
                    assertTrue(e.transferRateBytesPerSecond() <= limit, ctx);
                }
                Decision d = p.decide(since, false);
                if (d.converged()) {
                    assertTrue(d.expectedDowntime().orElseThrow().compareTo(policy.maxDowntime()) <= 0, ctx);
                }
                if (d.expectedDowntime().isPresent()
                        && d.expectedDowntime().get().compareTo(policy.maxDowntime()) <= 0) {
                    if (d.action() == Action.CONTINUE_PRECOPY) { // only for a lower downtime, and room for it
                        assertTrue(d.reason().contains("one more round should bring it to"), ctx + ": " + d.reason());
                        assertTrue(round + 1 < maxRounds, ctx);
                    } else {
                        assertEquals(Action.STOP_AND_COPY, d.action(), ctx + ": within max_downtime must stop");
                        assertTrue(d.converged(), ctx);
                    }
                }
                if (round >= maxRounds || (maxTotalSeconds > 0 && since.getSeconds() >= maxTotalSeconds)) {
                    assertFalse(d.action() == Action.CONTINUE_PRECOPY, ctx + ": limits reached at round " + round);
                }
                switch (d.action()) {
                    case FAIL -> assertEquals(NoConvergenceAction.FAIL, policy.onNoConvergence(), ctx);
                    case SWITCH_TO_POSTCOPY -> {
                        assertEquals(MigrationMode.HYBRID, mode, ctx);
                        assertEquals(NoConvergenceAction.SWITCH_TO_POSTCOPY, policy.onNoConvergence(), ctx);
                    }
                    case STOP_AND_COPY -> assertTrue(d.converged()
                            || policy.onNoConvergence() == NoConvergenceAction.CONTINUE, ctx);
                    case CONTINUE_PRECOPY -> { }
                }
                if (d.action() != Action.CONTINUE_PRECOPY) {
                    assertTrue(round <= maxRounds, ctx);
                    break;
                }
            }
        }
    }

    private static MigrationPolicy autoConverge(int initial, int increment, int max) {
        return MigrationPolicy.newBuilder().setAutoConverge(dev.ferry.v1.AutoConverge.newBuilder().setEnabled(true)
                .setInitialPercent(initial).setIncrementPercent(increment).setMaxPercent(max)).build();
    }

    @Test
    void autoConvergeRaisesTheThrottleAfterEveryTwoHotRoundsUpToItsMaximum() {
        PrecopyPlanner p = planner(MigrationMode.PRECOPY, autoConverge(20, 30, 75));
        List<Integer> throttles = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            // 256 MiB sent, 200 MiB dirtied: more than half, a hot round
            throttles.add(p.recordRound(round(256 * MiB, 200 * MiB, 1000)).throttlePercent());
        }
        assertEquals(List.of(0, 20, 20, 50, 50, 75, 75, 75), throttles);
    }

    @Test
    void aCoolRoundBreaksTheRunOfHotOnes() {
        PrecopyPlanner p = planner(MigrationMode.PRECOPY, autoConverge(20, 10, 99));
        assertEquals(0, p.recordRound(round(256 * MiB, 200 * MiB, 1000)).throttlePercent());
        assertEquals(0, p.recordRound(round(256 * MiB, 100 * MiB, 1000)).throttlePercent(), "under half: cool");
        assertEquals(0, p.recordRound(round(256 * MiB, 200 * MiB, 1000)).throttlePercent());
        assertEquals(20, p.recordRound(round(256 * MiB, 200 * MiB, 1000)).throttlePercent());
    }

    @Test
    void withoutAutoConvergeTheThrottleStaysOff() {
        PrecopyPlanner p = planner(MigrationMode.PRECOPY);
        for (int i = 0; i < 5; i++) {
            assertEquals(0, p.recordRound(round(256 * MiB, 250 * MiB, 1000)).throttlePercent());
        }
    }

    @Test
    void stallsDoNotEndPrecopyWhileTheThrottleCanStillRise() {
        // The guest dirties as fast as the rounds send: a stall every round.
        java.util.function.IntFunction<RoundStats> stall = i -> round(256 * MiB, 256 * MiB, 1000);
        List<Decision> plain = runUntilDecided(planner(MigrationMode.PRECOPY), stall);
        assertEquals(Tuning.DEFAULT_STALL_ROUNDS, plain.size(), "without throttling: three stalls and out");

        PrecopyPlanner throttled = planner(MigrationMode.PRECOPY, autoConverge(20, 40, 99));
        List<Decision> d = runUntilDecided(throttled, stall);
        // 0, 20, 20, 60, 60, 99 (max): from then on the stall trigger counts again, three rounds in a row.
        assertEquals(Action.FAIL, d.get(d.size() - 1).action());
        assertEquals(99, throttled.estimates().throttlePercent());
        assertTrue(d.size() > Tuning.DEFAULT_STALL_ROUNDS, "throttling got more rounds: " + d.size());
        assertTrue(d.get(d.size() - 1).reason().contains("as fast as it was sent"), d.get(d.size() - 1).reason());
    }
}
