package dev.ferry.control.migration;

import static dev.ferry.control.migration.Fixtures.GUEST_MEMORY;
import static dev.ferry.control.migration.Fixtures.GiB;
import static dev.ferry.control.migration.Fixtures.MiB;
import static dev.ferry.control.migration.Fixtures.busyRound;
import static dev.ferry.control.migration.Fixtures.config;
import static dev.ferry.control.migration.Fixtures.quietRound;
import static dev.ferry.control.migration.Fixtures.round;
import static dev.ferry.control.migration.Fixtures.stalledRound;
import static dev.ferry.v1.Migration.Phase.CANCELLED;
import static dev.ferry.v1.Migration.Phase.COMPLETED;
import static dev.ferry.v1.Migration.Phase.DEVICE_STATE;
import static dev.ferry.v1.Migration.Phase.FAILED;
import static dev.ferry.v1.Migration.Phase.NEGOTIATING;
import static dev.ferry.v1.Migration.Phase.POSTCOPY;
import static dev.ferry.v1.Migration.Phase.POSTCOPY_PAUSED;
import static dev.ferry.v1.Migration.Phase.PRECOPY;
import static dev.ferry.v1.Migration.Phase.RESUMING_ON_DESTINATION;
import static dev.ferry.v1.Migration.Phase.STOP_AND_COPY;
import static dev.ferry.v1.Migration.Phase.VERIFYING;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import io.grpc.Status;
import dev.ferry.control.migration.Decision.Action;
import dev.ferry.control.migration.SourceStateMachine.Event;
import dev.ferry.v1.CompleteIncomingMigrationResponse;
import dev.ferry.v1.CompleteIncomingPostcopyResponse;
import dev.ferry.v1.MemoryDigest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.Migration.Phase;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.MigrationPolicy.NoConvergenceAction;
import dev.ferry.v1.MigrationProgress;
import dev.ferry.v1.MigrationStatistics;
import dev.ferry.v1.PostcopyStatistics;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.function.Consumer;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

class SourceStateMachineTest {

    private static final MemoryDigest DIGEST = MemoryDigest.newBuilder()
            .setAlgorithm(MemoryDigest.Algorithm.XXH3_64_PAGE_SUM)
            .setValue(ByteString.copyFrom(new byte[] {1, 2, 3, 4, 5, 6, 7, 8}))
            .setPageCount(GUEST_MEMORY / 4096)
            .build();

    private final FakeClock clock = new FakeClock();

    private SourceStateMachine newMigration(MigrationMode mode) {
        return new SourceStateMachine(ConvergencePolicy.defaults(mode), clock);
    }

    private SourceStateMachine newMigration(MigrationMode mode, MigrationPolicy policy) {
        return new SourceStateMachine(ConvergencePolicy.of(mode, policy), clock);
    }

    private static List<Phase> phases(SourceStateMachine m) {
        return m.history().stream().map(PhaseChange::phase).toList();
    }

    // ------------------------------------------------------------------------------------------ valid paths

    @Test
    void precopyConvergesInTwoRoundsAndCompletes() {
        SourceStateMachine m = newMigration(MigrationMode.PRECOPY);
        assertEquals(NEGOTIATING, m.phase());
        clock.advanceMillis(50);
        m.negotiated(config(MigrationMode.PRECOPY));
        assertEquals(PRECOPY, m.phase());
        assertEquals(GUEST_MEMORY, m.progress().getBytesRemaining(), "before round 1 all memory remains");

        assertEquals(1, m.roundStarted());
        m.batchSent(1000, 24);
        clock.advanceMillis(1000);
        m.roundFinished(busyRound());
        Decision d1 = m.decideAfterRound();
        assertEquals(Action.CONTINUE_PRECOPY, d1.action(), d1.reason());

        assertEquals(2, m.roundStarted());
        clock.advanceMillis(500);
        m.roundFinished(round(512 * MiB, 2 * MiB, 500)); // 2 ms of pages left: another round would not pay
        Decision d2 = m.decideAfterRound();
        assertEquals(Action.STOP_AND_COPY, d2.action(), d2.reason());
        assertTrue(d2.converged());

        m.stopAndCopyStarted();
        assertEquals(STOP_AND_COPY, m.phase());
        assertEquals(3, m.roundStarted());
        clock.advanceMillis(10);
        m.roundFinished(round(2 * MiB, 0, 10));
        m.deviceStateStarted();
        assertEquals(DEVICE_STATE, m.phase());
        assertFalse(m.postcopyPath());
        clock.advanceMillis(5);
        m.deviceStateSent(64 * 1024);
        assertEquals(RESUMING_ON_DESTINATION, m.phase());
        clock.advanceMillis(15);
        m.destinationResumed(DIGEST, CompleteIncomingMigrationResponse.newBuilder()
                .setDestinationMemoryDigest(DIGEST).setMemoryVerified(true)
                .setGuestPause(com.google.protobuf.Duration.newBuilder().setNanos(25_000_000)).build());

        // The destination runs the VM; the source stays paused while it compares memory.
        assertEquals(VERIFYING, m.phase());
        assertFalse(m.isTerminal());
        assertFalse(m.accepts(Event.CANCEL));
        assertFalse(m.accepts(Event.COMMITTED), "nothing compared yet");
        assertFalse(m.statistics().getMemoryVerified(), "not verified before the comparison");
        clock.advanceMillis(40);
        assertEquals(SourceStateMachine.Verdict.COMMIT, m.verificationCompared(new MemoryVerification(262_000, 144, 512, 0)));
        assertFalse(m.accepts(Event.ROLLED_BACK));
        m.committed();

        assertEquals(COMPLETED, m.phase());
        assertTrue(m.isTerminal());
        assertEquals(List.of(NEGOTIATING, PRECOPY, STOP_AND_COPY, DEVICE_STATE, RESUMING_ON_DESTINATION, VERIFYING,
                COMPLETED), phases(m));
        // Timestamps come from the fake clock: NEGOTIATING at 0, PRECOPY at 50 ms, STOP_AND_COPY at 1550 ms, ...
        List<Duration> at = m.history().stream().map(c -> Duration.between(FakeClock.EPOCH, c.at())).toList();
        assertEquals(List.of(Duration.ZERO, Duration.ofMillis(50), Duration.ofMillis(1550), Duration.ofMillis(1560),
                Duration.ofMillis(1565), Duration.ofMillis(1580), Duration.ofMillis(1620)), at);
        assertTrue(m.failureReason().isEmpty());
        assertTrue(m.aftermath().isEmpty());

        MigrationStatistics s = m.statistics();
        assertEquals(Duration.ofMillis(30), seconds(s.getDowntime()),
                "pause at 1550 ms to resume at 1580 ms: the verification after the resume is not downtime");
        assertEquals(Duration.ofMillis(30), m.downtime(), "what the switchover's cost is learned from");
        assertEquals(Duration.ofMillis(25), seconds(s.getGuestPause()));
        assertEquals(Duration.ofMillis(1620), seconds(s.getTotalTime()));
        assertEquals(MigrationStatistics.VerificationMethod.UNWRITTEN_PAGES_AFTER_RESUME, s.getVerificationMethod());
        assertEquals(262_000, s.getPagesCompared());
        assertEquals(144, s.getPagesWrittenAfterResume());
        assertEquals(0, s.getChunksDiffering());
        assertEquals(GiB + 512 * MiB + 2 * MiB, s.getTransferredBytes(), "round stats replace the live batch counts");
        assertEquals(64 * 1024, s.getDeviceStateBytes());
        assertEquals(3, s.getRounds());
        // From start (50 ms) to the last page (1560 ms): 1.51 s.
        assertEquals((long) ((GiB + 514 * MiB) / 1.51), s.getThroughputBytesPerSecond(), 2.0);
        assertTrue(s.getMemoryVerified());
        assertEquals(DIGEST, s.getSourceMemoryDigest());
        assertEquals(DIGEST, s.getDestinationMemoryDigest());
        assertFalse(s.hasPostcopy());

        MigrationProgress p = m.progress();
        assertEquals(3, p.getRound());
        assertEquals(0, p.getBytesRemaining());
        clock.advanceMillis(10_000);
        assertEquals(Duration.ofMillis(1620), seconds(m.progress().getElapsed()), "elapsed stops at end_time");
    }

    @Test
    void idleGuestConvergesAfterTheFirstRound() {
        SourceStateMachine m = newMigration(MigrationMode.PRECOPY);
        m.negotiated(config(MigrationMode.PRECOPY));
        m.roundStarted();
        m.roundFinished(round(GiB, 40 * 4096, 1000));
        Decision d = m.decideAfterRound();
        assertEquals(Action.STOP_AND_COPY, d.action(), d.reason());
        assertTrue(d.converged());
    }

    @Test
    void hybridSwitchesToPostcopyAutomaticallyWhenPrecopyStalls() {
        SourceStateMachine m = newMigration(MigrationMode.HYBRID);
        m.negotiated(config(MigrationMode.HYBRID));
        List<Action> actions = new ArrayList<>();
        Decision d;
        do {
            m.roundStarted();
            clock.advanceMillis(1000);
            m.roundFinished(stalledRound());
            d = m.decideAfterRound();
            actions.add(d.action());
        } while (d.action() == Action.CONTINUE_PRECOPY);
        assertEquals(List.of(Action.CONTINUE_PRECOPY, Action.CONTINUE_PRECOPY, Action.SWITCH_TO_POSTCOPY), actions,
                "three stalled rounds in a row trigger on_no_convergence (default SWITCH_TO_POSTCOPY for HYBRID)");
        assertTrue(d.reason().contains("SWITCH_TO_POSTCOPY"), d.reason());
        assertFalse(m.accepts(Event.STOP_AND_COPY_STARTED));
        assertFalse(m.accepts(Event.ROUND_STARTED));

        m.deviceStateStarted();
        assertTrue(m.postcopyPath());
        m.deviceStateSent(1000);
        clock.advanceMillis(20);
        m.destinationResumed(null, CompleteIncomingMigrationResponse.getDefaultInstance());
        assertEquals(POSTCOPY, m.phase());
        assertFalse(m.accepts(Event.CANCEL));

        m.postcopyPagesMissing(1000);
        assertEquals(1000 * 4096, m.progress().getBytesRemaining());
        assertEquals(4, m.roundStarted(), "postcopy background passes continue the round count");
        m.postcopyFaultServed(1, 0);
        m.postcopyFaultServed(0, 1);
        m.batchSent(500, 0);
        m.roundFinished(new RoundStats(998, 0, 0, Duration.ofMillis(100)));
        assertEquals(2 * 4096, m.progress().getBytesRemaining(), "a finished pass leaves the rest missing");
        m.postcopyPagesMissing(0);
        PostcopyStatistics pcStats = PostcopyStatistics.newBuilder().setPageFaults(2).setBackgroundBytes(998 * 4096)
                .build();
        m.postcopyCompleted(DIGEST, CompleteIncomingPostcopyResponse.newBuilder().setMemoryVerified(true)
                .setDestinationMemoryDigest(DIGEST).setPostcopy(pcStats).build());
        assertEquals(VERIFYING, m.phase(), "every page is there; the source keeps its copy until verified");
        assertEquals(SourceStateMachine.Verdict.COMMIT, m.verificationCompared(new MemoryVerification(200_000, 7, 512, 0)));
        m.committed();

        assertEquals(COMPLETED, m.phase());
        assertEquals(List.of(NEGOTIATING, PRECOPY, DEVICE_STATE, RESUMING_ON_DESTINATION, POSTCOPY, VERIFYING,
                COMPLETED), phases(m));
        MigrationProgress p = m.progress();
        assertEquals(2, p.getPostcopyPageFaults());
        assertEquals(3 * GiB + 999 * 4096, p.getBytesSent());
        assertEquals(1, p.getZeroPages());
        MigrationStatistics s = m.statistics();
        assertEquals(pcStats.toBuilder().setUnwrittenPagesVerified(true).setPagesWrittenSinceResume(7).build(),
                s.getPostcopy());
        assertEquals(7, s.getPagesWrittenAfterResume());
        assertEquals(Duration.ofMillis(20), seconds(s.getDowntime()), "postcopy downtime ends when the VM runs");
        assertTrue(s.getMemoryVerified());
    }

    @Test
    void aMismatchAfterPostcopyGivesTheVmBackToTheSource() {
        // Chunks differ; or the chunks match but the pages placed do not add up to the pages sent.
        for (boolean chunksDiffer : new boolean[] {true, false}) {
            SourceStateMachine m = newMigration(MigrationMode.POSTCOPY);
            m.negotiated(config(MigrationMode.POSTCOPY));
            m.deviceStateSent(10);
            m.destinationResumed(null, CompleteIncomingMigrationResponse.getDefaultInstance());
            m.postcopyCompleted(DIGEST, CompleteIncomingPostcopyResponse.newBuilder().setMemoryVerified(chunksDiffer)
                    .setDestinationMemoryDigest(DIGEST).build());
            assertEquals(VERIFYING, m.phase());
            assertEquals(SourceStateMachine.Verdict.ROLL_BACK,
                    m.verificationCompared(new MemoryVerification(1000, 3, 8, chunksDiffer ? 1 : 0)));
            assertFalse(m.accepts(Event.COMMITTED), "a mismatch never commits");
            assertEquals(Aftermath.SOURCE_KEEPS_VM, m.rolledBack());
            assertEquals(FAILED, m.phase());
            assertTrue(m.failedWithDataLoss());
            assertTrue(m.failureReason().orElseThrow().contains("runs on the source again"), m.failureReason().get());
            MigrationStatistics s = m.statistics();
            assertFalse(s.getMemoryVerified());
            assertEquals(chunksDiffer ? 1 : 0, s.getChunksDiffering());
            assertEquals(!chunksDiffer, s.getPostcopy().getUnwrittenPagesVerified());
        }
    }

    @Test
    void aMismatchAfterPrecopyGivesTheVmBackToTheSource() {
        SourceStateMachine m = inResumingOnDestination();
        m.destinationResumed(DIGEST, CompleteIncomingMigrationResponse.newBuilder().setMemoryVerified(true).build());
        assertEquals(SourceStateMachine.Verdict.ROLL_BACK,
                m.verificationCompared(new MemoryVerification(262_000, 50, 512, 1)));
        assertEquals(Aftermath.SOURCE_KEEPS_VM, m.rolledBack());
        assertEquals(List.of(RESUMING_ON_DESTINATION, VERIFYING, FAILED), phases(m).subList(4, 7));
        assertTrue(m.failedWithDataLoss());
        assertTrue(m.failureReason().orElseThrow().contains("1 of 512 chunks"), m.failureReason().get());
    }

    @Test
    void aVerificationThatCannotFinishLeavesTheVmUndecided() {
        SourceStateMachine m = inResumingOnDestination();
        m.destinationResumed(DIGEST, CompleteIncomingMigrationResponse.newBuilder().setMemoryVerified(true).build());
        assertEquals(Aftermath.UNDECIDED, m.failed("UNAVAILABLE: destination gone"),
                "the destination runs the VM and the source holds it paused: neither may act alone");
        assertFalse(m.failedWithDataLoss());

        SourceStateMachine mismatch = inResumingOnDestination();
        mismatch.destinationResumed(DIGEST, CompleteIncomingMigrationResponse.newBuilder().setMemoryVerified(true).build());
        mismatch.verificationCompared(new MemoryVerification(10, 0, 1, 1));
        assertEquals(Aftermath.UNDECIDED, mismatch.failed("the abort was not confirmed"));
        assertTrue(mismatch.failedWithDataLoss(), "the mismatch stands even when the rollback could not finish");
    }

    @Test
    void withoutVerificationTheResultSaysSoAndClaimsNothing() {
        SourceStateMachine m = new SourceStateMachine(ConvergencePolicy.of(MigrationMode.PRECOPY,
                MigrationPolicy.newBuilder().setVerifyMemory(false).build()), clock);
        m.negotiated(config(MigrationMode.PRECOPY));
        m.roundStarted();
        m.roundFinished(quietRound());
        m.decideAfterRound();
        m.stopAndCopyStarted();
        m.roundStarted();
        m.roundFinished(round(0, 0, 1));
        m.deviceStateStarted();
        m.deviceStateSent(100);
        m.destinationResumed(null, CompleteIncomingMigrationResponse.getDefaultInstance());
        assertEquals(COMPLETED, m.phase(), "no VERIFYING without verify_memory");
        MigrationStatistics s = m.statistics();
        assertEquals(MigrationStatistics.VerificationMethod.NONE, s.getVerificationMethod());
        assertFalse(s.getMemoryVerified());
        assertEquals(0, s.getPagesCompared());
        assertTrue(m.history().get(m.history().size() - 1).note().contains("not verified"));
    }

    @Test
    void manualSwitchDuringARoundTakesEffectAtTheNextDecision() {
        SourceStateMachine m = newMigration(MigrationMode.HYBRID);
        m.negotiated(config(MigrationMode.HYBRID));
        m.roundStarted();
        assertTrue(m.requestSwitchToPostcopy());
        assertFalse(m.requestSwitchToPostcopy(), "a repeated request changes nothing");
        assertTrue(m.postcopySwitchRequested());
        assertEquals(PRECOPY, m.phase());
        m.roundFinished(quietRound()); // would converge, but the operator asked for postcopy
        Decision d = m.decideAfterRound();
        assertEquals(Action.SWITCH_TO_POSTCOPY, d.action());
        assertTrue(d.reason().contains("SwitchToPostcopy"), d.reason());
        m.deviceStateStarted();
        assertEquals(DEVICE_STATE, m.phase());
        assertTrue(m.postcopyPath());
    }

    @Test
    void manualSwitchBetweenRoundsNeedsNoFurtherRound() {
        SourceStateMachine m = newMigration(MigrationMode.HYBRID);
        m.negotiated(config(MigrationMode.HYBRID));
        m.roundStarted();
        m.roundFinished(busyRound());
        assertEquals(Action.CONTINUE_PRECOPY, m.decideAfterRound().action());
        assertFalse(m.accepts(Event.DEVICE_STATE_STARTED));
        m.requestSwitchToPostcopy();
        m.deviceStateStarted();
        assertEquals(DEVICE_STATE, m.phase());
        assertEquals(Action.SWITCH_TO_POSTCOPY, m.lastDecision().orElseThrow().action());
        assertTrue(m.history().get(m.history().size() - 1).note().contains("SwitchToPostcopy"));
    }

    @Test
    void manualSwitchIsRefusedOutsideHybridPrecopy() {
        SourceStateMachine precopy = newMigration(MigrationMode.PRECOPY);
        precopy.negotiated(config(MigrationMode.PRECOPY));
        IllegalTransitionException e = assertThrows(IllegalTransitionException.class,
                precopy::requestSwitchToPostcopy);
        assertTrue(e.getMessage().contains("HYBRID"), e.getMessage());
        assertFalse(precopy.postcopySwitchRequested());

        SourceStateMachine hybrid = newMigration(MigrationMode.HYBRID);
        hybrid.negotiated(config(MigrationMode.HYBRID));
        hybrid.roundStarted();
        hybrid.roundFinished(quietRound());
        hybrid.decideAfterRound();
        hybrid.stopAndCopyStarted();
        e = assertThrows(IllegalTransitionException.class, hybrid::requestSwitchToPostcopy);
        assertEquals(STOP_AND_COPY, e.phase());
    }

    @Test
    void postcopyModePausesAtOnceAndSkipsPrecopy() {
        SourceStateMachine m = newMigration(MigrationMode.POSTCOPY);
        m.negotiated(config(MigrationMode.POSTCOPY));
        assertEquals(DEVICE_STATE, m.phase());
        assertTrue(m.postcopyPath());
        assertFalse(m.accepts(Event.ROUND_STARTED));
        clock.advanceMillis(7);
        m.deviceStateSent(10);
        clock.advanceMillis(3);
        m.destinationResumed(null, CompleteIncomingMigrationResponse.getDefaultInstance());
        assertEquals(POSTCOPY, m.phase());
        m.roundStarted();
        m.roundFinished(new RoundStats(Fixtures.pages(GUEST_MEMORY), 0, 0, Duration.ofSeconds(1)));
        m.postcopyCompleted(null, CompleteIncomingPostcopyResponse.newBuilder().setMemoryVerified(true).build());
        m.verificationCompared(new MemoryVerification(10, 0, 1, 0));
        m.committed();
        assertEquals(List.of(NEGOTIATING, DEVICE_STATE, RESUMING_ON_DESTINATION, POSTCOPY, VERIFYING, COMPLETED),
                phases(m));
        assertEquals(Duration.ofMillis(10), seconds(m.statistics().getDowntime()));
        assertTrue(m.statistics().hasPostcopy(), "postcopy statistics are set whenever postcopy ran");
    }

    /**
     * Paused at 0, request sent at 10 ms, answer at 40 ms after the destination spent 5 ms resuming and
     * answered 2 ms after resuming: the VM ran somewhere in [15, 38] ms on our clock.
     */
    private Duration downtimeWith(CompleteIncomingMigrationResponse.Builder response) {
        SourceStateMachine m = newMigration(MigrationMode.POSTCOPY);
        m.negotiated(config(MigrationMode.POSTCOPY));
        clock.advanceMillis(10);
        m.deviceStateSent(10);
        Instant sent = clock.instant();
        clock.advanceMillis(30);
        m.destinationResumed(null, response.setResumeDuration(millis(5)).setAnsweredAfterResume(millis(2))
                .setResumedTime(ProtoTime.toProto(sent.plus(resumedAfterSend))).build());
        return seconds(m.statistics().getDowntime());
    }

    private Duration resumedAfterSend;

    private static com.google.protobuf.Duration millis(int ms) {
        return com.google.protobuf.Duration.newBuilder().setNanos(ms * 1_000_000).build();
    }

    @Test
    void downtimeEndsAtTheDestinationsResumeTimeWithinWhatTheRoundTripAllows() {
        resumedAfterSend = Duration.ofMillis(12);
        assertEquals(Duration.ofMillis(22), downtimeWith(CompleteIncomingMigrationResponse.newBuilder()),
                "clocks agree: the destination's own resume time");
        resumedAfterSend = Duration.ofMillis(-500);
        assertEquals(Duration.ofMillis(15), downtimeWith(CompleteIncomingMigrationResponse.newBuilder()),
                "destination clock behind: no earlier than request + resume_duration");
        resumedAfterSend = Duration.ofSeconds(3);
        assertEquals(Duration.ofMillis(38), downtimeWith(CompleteIncomingMigrationResponse.newBuilder()),
                "destination clock ahead: no later than the answer - answered_after_resume");
    }

    @Test
    void postcopyPausesOnConnectionLossAndResumes() {
        SourceStateMachine m = inPostcopy();
        m.roundStarted();
        m.batchSent(100, 0);
        assertTrue(m.postcopyConnectionLost("pager stream UNAVAILABLE"));
        assertEquals(POSTCOPY_PAUSED, m.phase());
        assertFalse(m.postcopyConnectionLost("data plane UNAVAILABLE"), "second report of the same cut is a no-op");
        assertEquals(POSTCOPY_PAUSED, m.phase());
        assertFalse(m.accepts(Event.ROUND_STARTED));
        assertFalse(m.accepts(Event.POSTCOPY_COMPLETED));
        IllegalTransitionException e = assertThrows(IllegalTransitionException.class, m::cancelRequested);
        assertTrue(e.reason().contains("split between the hosts"), e.reason());
        assertTrue(e.reason().contains("ResumeMigration"), e.reason());

        m.postcopyPagesMissing(42);
        m.postcopyConnectionRestored();
        assertEquals(POSTCOPY, m.phase());
        assertFalse(m.accepts(Event.POSTCOPY_CONNECTION_RESTORED));
        m.postcopyConnectionLost("again");
        m.postcopyConnectionRestored();
        m.roundStarted();
        m.roundFinished(new RoundStats(42, 0, 0, Duration.ofMillis(1)));
        m.postcopyCompleted(null, CompleteIncomingPostcopyResponse.getDefaultInstance());
        assertEquals(List.of(POSTCOPY, POSTCOPY_PAUSED, POSTCOPY, POSTCOPY_PAUSED, POSTCOPY, VERIFYING),
                phases(m).subList(4, 10));
        assertEquals(2, m.statistics().getPostcopy().getRecoveries());
        assertEquals(Fixtures.pages(GiB) + 100 + 42, m.progress().getPagesSent(),
                "the abandoned pass keeps the pages it had sent");
    }

    @Test
    void plannerFailureEndsFailedWithTheSourceKeepingTheVm() {
        SourceStateMachine m = newMigration(MigrationMode.PRECOPY, MigrationPolicy.newBuilder().setMaxRounds(2).build());
        m.negotiated(config(MigrationMode.PRECOPY));
        m.roundStarted();
        m.roundFinished(busyRound());
        assertEquals(Action.CONTINUE_PRECOPY, m.decideAfterRound().action());
        m.roundStarted();
        m.roundFinished(busyRound());
        Decision d = m.decideAfterRound();
        assertEquals(Action.FAIL, d.action());
        assertEquals(FAILED, m.phase());
        assertEquals(d.reason(), m.failureReason().orElseThrow());
        assertTrue(d.reason().contains("max_rounds 2"), d.reason());
        assertEquals(Aftermath.SOURCE_KEEPS_VM, m.aftermath().orElseThrow());
        assertTrue(m.endTime().isPresent());
    }

    @Test
    void maxTotalTimeIsMeasuredOnTheInjectedClockFromCreateTime() {
        SourceStateMachine m = newMigration(MigrationMode.PRECOPY, MigrationPolicy.newBuilder()
                .setMaxTotalTime(com.google.protobuf.Duration.newBuilder().setSeconds(10)).build());
        clock.advanceMillis(500); // negotiation counts: the limit runs from create_time
        m.negotiated(config(MigrationMode.PRECOPY));
        List<Action> actions = new ArrayList<>();
        while (!m.isTerminal()) {
            m.roundStarted();
            clock.advanceMillis(3000);
            m.roundFinished(busyRound());
            actions.add(m.decideAfterRound().action());
        }
        // Decisions at 3.5 s, 6.5 s, 9.5 s continue; at 12.5 s the 10 s limit has passed.
        assertEquals(List.of(Action.CONTINUE_PRECOPY, Action.CONTINUE_PRECOPY, Action.CONTINUE_PRECOPY, Action.FAIL),
                actions);
        assertTrue(m.failureReason().orElseThrow().contains("max_total_time"), m.failureReason().orElseThrow());
    }

    @Test
    void continuePolicyStopsAndCopiesAnywayWhenPrecopyDoesNotConverge() {
        SourceStateMachine m = newMigration(MigrationMode.PRECOPY, MigrationPolicy.newBuilder()
                .setOnNoConvergence(NoConvergenceAction.CONTINUE).build());
        m.negotiated(config(MigrationMode.PRECOPY));
        Decision d;
        do {
            m.roundStarted();
            m.roundFinished(stalledRound());
            d = m.decideAfterRound();
        } while (d.action() == Action.CONTINUE_PRECOPY);
        assertEquals(Action.STOP_AND_COPY, d.action());
        assertFalse(d.converged());
        m.stopAndCopyStarted();
        assertEquals(STOP_AND_COPY, m.phase());
        assertTrue(m.history().get(m.history().size() - 1).note().contains("CONTINUE"));
    }

    // ------------------------------------------------------------------------------------------ error code and step

    private static ErrorInfo stepOf(com.google.rpc.Status error) {
        try {
            assertEquals(1, error.getDetailsCount(), error.toString());
            return error.getDetails(0).unpack(ErrorInfo.class);
        } catch (InvalidProtocolBufferException e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void aFailureKeepsItsCauseCodeAndTheStepItFailedIn() {
        SourceStateMachine lost = newMigration(MigrationMode.PRECOPY);
        lost.negotiated(config(MigrationMode.PRECOPY));
        lost.roundStarted();
        lost.failed(Status.Code.UNAVAILABLE, "UNAVAILABLE: link lost");
        com.google.rpc.Status e = lost.error().orElseThrow();
        assertEquals(Status.Code.UNAVAILABLE.value(), e.getCode());
        assertEquals("UNAVAILABLE: link lost", e.getMessage());
        ErrorInfo info = stepOf(e);
        assertEquals("PRECOPY_ROUND", info.getReason());
        assertEquals("ferry.dev", info.getDomain());
        assertEquals("true", info.getMetadataOrThrow("retryable"));

        SourceStateMachine refused = inResumingOnDestination();
        refused.switchoverRefused(Status.Code.FAILED_PRECONDITION, "FAILED_PRECONDITION: restore refused");
        assertEquals(Status.Code.FAILED_PRECONDITION.value(), refused.error().orElseThrow().getCode());
        assertEquals("SWITCHOVER", stepOf(refused.error().get()).getReason());
        assertEquals("false", stepOf(refused.error().get()).getMetadataOrThrow("retryable"));

        SourceStateMachine bug = newMigration(MigrationMode.PRECOPY);
        bug.failed("NullPointerException: null");
        assertEquals(Status.Code.INTERNAL.value(), bug.error().orElseThrow().getCode());
        assertEquals("NEGOTIATE", stepOf(bug.error().get()).getReason());
    }

    @Test
    void verificationFailureIsDataLossInVerifyAndCancelIsCancelled() {
        SourceStateMachine m = inResumingOnDestination();
        m.destinationResumed(DIGEST, CompleteIncomingMigrationResponse.newBuilder().setMemoryVerified(true).build());
        m.verificationCompared(new MemoryVerification(10, 0, 1, 1));
        m.failed(Status.Code.UNAVAILABLE, "the abort was not confirmed");
        assertEquals(Status.Code.DATA_LOSS.value(), m.error().orElseThrow().getCode(),
                "the mismatch is the cause, not the link that failed while rolling back");
        assertEquals("VERIFY", stepOf(m.error().get()).getReason());

        SourceStateMachine c = newMigration(MigrationMode.PRECOPY);
        c.negotiated(config(MigrationMode.PRECOPY));
        c.cancelRequested();
        assertEquals(Status.Code.CANCELLED.value(), c.error().orElseThrow().getCode());
        assertEquals("false", stepOf(c.error().get()).getMetadataOrThrow("retryable"));
        assertFalse(newMigration(MigrationMode.PRECOPY).error().isPresent(), "no error while it runs");
    }

    @Test
    void switchoverRefusedByTheDestinationGivesTheVmBackToTheSource() {
        SourceStateMachine m = inResumingOnDestination();
        assertEquals(Aftermath.SOURCE_KEEPS_VM, m.switchoverRefused("DATA_LOSS: memory digest mismatch"));
        assertEquals(FAILED, m.phase());
        assertTrue(m.failureReason().orElseThrow().contains("digest mismatch"));
    }

    @Test
    void negotiatedRejectsAConfigThatDoesNotFitTheMode() {
        SourceStateMachine m = newMigration(MigrationMode.HYBRID);
        assertThrows(IllegalArgumentException.class, () -> m.negotiated(config(MigrationMode.PRECOPY)));
        assertThrows(IllegalArgumentException.class, () -> m.negotiated(config(MigrationMode.HYBRID).toBuilder()
                .clearFeatures().build()));
        assertEquals(NEGOTIATING, m.phase());
        assertEquals(1, m.history().size());
        m.negotiated(config(MigrationMode.HYBRID));
        assertEquals(PRECOPY, m.phase());
    }

    @Test
    void writeToFillsTheRecordFieldsThisMachineOwns() {
        SourceStateMachine m = newMigration(MigrationMode.PRECOPY);
        clock.advanceMillis(5);
        Migration running = m.writeTo(Migration.newBuilder().setName("migrations/m1")).build();
        assertEquals("migrations/m1", running.getName());
        assertEquals(Migration.Role.SOURCE, running.getRole());
        assertEquals(NEGOTIATING, running.getPhase());
        assertEquals(300_000_000, running.getPolicy().getMaxDowntime().getNanos());
        assertFalse(running.hasConfig());
        assertFalse(running.hasStartTime());
        assertFalse(running.hasStatistics());
        assertEquals(5_000_000, running.getProgress().getElapsed().getNanos());
        m.cancelRequested();
        Migration done = m.writeTo(Migration.newBuilder()).build();
        assertEquals(CANCELLED, done.getPhase());
        assertTrue(done.hasEndTime());
        assertTrue(done.hasStatistics());
    }

    // ------------------------------------------------------------------------------------------ cancel and fail

    @TestFactory
    Stream<DynamicTest> cancelInEveryCancellablePhaseKeepsTheVmOnTheSource() {
        return scenarios().stream().filter(s -> s.expected.contains(Event.CANCEL) && s.phase != CANCELLED)
                .map(s -> dynamicTest(s.name, () -> {
                    SourceStateMachine m = s.build(clock);
                    clock.advanceMillis(3);
                    assertEquals(Aftermath.SOURCE_KEEPS_VM, m.cancelRequested());
                    assertEquals(CANCELLED, m.phase());
                    assertEquals(Aftermath.SOURCE_KEEPS_VM, m.aftermath().orElseThrow());
                    assertTrue(m.failureReason().orElseThrow().contains("CancelMigration"));
                    assertEquals(clock.instant(), m.endTime().orElseThrow());
                    int entries = m.history().size();
                    assertEquals(Aftermath.SOURCE_KEEPS_VM, m.cancelRequested(), "cancelling again succeeds");
                    assertEquals(entries, m.history().size(), "... and changes nothing");
                    assertEquals(CANCELLED, m.phase());
                }));
    }

    @TestFactory
    Stream<DynamicTest> cancelIsRefusedOnceTheDestinationMayRunTheVm() {
        return scenarios().stream().filter(s -> !s.expected.contains(Event.CANCEL))
                .map(s -> dynamicTest(s.name, () -> {
                    SourceStateMachine m = s.build(clock);
                    IllegalTransitionException e = assertThrows(IllegalTransitionException.class, m::cancelRequested);
                    assertEquals(s.phase, m.phase());
                    assertEquals(Event.CANCEL, e.event());
                    assertTrue(e.getMessage().startsWith("CANCEL is not valid in phase " + s.phase.name() + ": "),
                            e.getMessage());
                    String expectedWords = switch (s.phase) {
                        case POSTCOPY, POSTCOPY_PAUSED -> "memory is split between the hosts";
                        case RESUMING_ON_DESTINATION -> "may already be running there";
                        case VERIFYING -> "memory is being verified";
                        case COMPLETED -> "has completed";
                        case FAILED -> "already failed";
                        default -> throw new AssertionError("cancel refused in " + s.phase);
                    };
                    assertTrue(e.reason().contains(expectedWords), e.reason());
                }));
    }

    @TestFactory
    Stream<DynamicTest> failureInEveryNonTerminalPhaseEndsFailedWithTheReasonKept() {
        return scenarios().stream().filter(s -> !SourceStateMachine.TERMINAL.contains(s.phase))
                .map(s -> dynamicTest(s.name, () -> {
                    SourceStateMachine m = s.build(clock);
                    clock.advanceMillis(1);
                    String reason = "data plane stream 2: UNAVAILABLE in " + s.name;
                    Aftermath a = m.failed(reason);
                    assertEquals(FAILED, m.phase());
                    assertEquals(reason, m.failureReason().orElseThrow());
                    assertEquals(reason, m.history().get(m.history().size() - 1).note());
                    Aftermath expected = switch (s.phase) {
                        case RESUMING_ON_DESTINATION, VERIFYING -> Aftermath.UNDECIDED;
                        case POSTCOPY, POSTCOPY_PAUSED -> Aftermath.DESTINATION_KEEPS_VM;
                        default -> Aftermath.SOURCE_KEEPS_VM;
                    };
                    assertEquals(expected, a);
                    assertEquals(expected, m.aftermath().orElseThrow());
                    IllegalTransitionException e = assertThrows(IllegalTransitionException.class,
                            () -> m.failed("second failure"));
                    assertEquals(FAILED, e.phase());
                    assertEquals(reason, m.failureReason().orElseThrow(), "the first reason is kept");
                }));
    }

    // ------------------------------------------------------------------------------------------ transition table

    /**
     * Every scenario against every event: the events listed as valid are accepted, every other one throws an
     * IllegalTransitionException that names the phase and the event and leaves the machine unchanged.
     */
    @TestFactory
    Stream<DynamicTest> everyEventIsAcceptedExactlyWhereTheTableSays() {
        List<DynamicTest> tests = new ArrayList<>();
        for (Scenario s : scenarios()) {
            for (Event e : Event.values()) {
                boolean valid = s.expected.contains(e);
                tests.add(dynamicTest(s.name + " / " + e + (valid ? " accepted" : " refused"), () -> {
                    FakeClock c = new FakeClock();
                    SourceStateMachine m = s.build(c);
                    assertEquals(s.phase, m.phase(), "scenario reaches its phase");
                    assertEquals(valid, m.accepts(e), () -> "accepts(" + e + "): " + m.refusal(e));
                    if (valid) {
                        fire(m, e);
                        return;
                    }
                    int entries = m.history().size();
                    MigrationProgress before = m.progress();
                    IllegalTransitionException ex = assertThrows(IllegalTransitionException.class, () -> fire(m, e));
                    assertEquals(s.phase, ex.phase());
                    assertEquals(e, ex.event());
                    assertTrue(ex.getMessage().contains(s.phase.name()) && ex.getMessage().contains(e.name()),
                            ex.getMessage());
                    assertEquals(m.refusal(e).orElseThrow(), ex.reason());
                    assertEquals(s.phase, m.phase());
                    assertEquals(entries, m.history().size());
                    assertEquals(before, m.progress());
                }));
            }
        }
        return tests.stream();
    }

    private record Scenario(String name, MigrationMode mode, Phase phase, Consumer<SourceStateMachine> steps,
                            Set<Event> expected) {
        SourceStateMachine build(FakeClock clock) {
            SourceStateMachine m = new SourceStateMachine(ConvergencePolicy.defaults(mode), clock);
            steps.accept(m);
            return m;
        }
    }

    private static Scenario scenario(String name, MigrationMode mode, Phase phase, Consumer<SourceStateMachine> steps,
                                     Event... expected) {
        Set<Event> set = EnumSet.noneOf(Event.class);
        set.addAll(List.of(expected));
        return new Scenario(name, mode, phase, steps, set);
    }

    private static final MigrationMode H = MigrationMode.HYBRID;

    private static List<Scenario> scenarios() {
        Consumer<SourceStateMachine> neg = m -> m.negotiated(config(m.mode()));
        Consumer<SourceStateMachine> running = neg.andThen(SourceStateMachine::roundStarted);
        Consumer<SourceStateMachine> awaiting = running.andThen(m -> m.roundFinished(busyRound()));
        Consumer<SourceStateMachine> cont = awaiting.andThen(SourceStateMachine::decideAfterRound);
        Consumer<SourceStateMachine> stop = running.andThen(m -> m.roundFinished(quietRound()))
                .andThen(SourceStateMachine::decideAfterRound);
        Consumer<SourceStateMachine> sw = running.andThen(SourceStateMachine::requestSwitchToPostcopy)
                .andThen(m -> m.roundFinished(busyRound())).andThen(SourceStateMachine::decideAfterRound);
        Consumer<SourceStateMachine> sac = stop.andThen(SourceStateMachine::stopAndCopyStarted);
        Consumer<SourceStateMachine> sacRunning = sac.andThen(SourceStateMachine::roundStarted);
        Consumer<SourceStateMachine> sacDone = sacRunning.andThen(m -> m.roundFinished(round(0, 0, 1)));
        Consumer<SourceStateMachine> devState = sacDone.andThen(SourceStateMachine::deviceStateStarted);
        Consumer<SourceStateMachine> resuming = devState.andThen(m -> m.deviceStateSent(1));
        Consumer<SourceStateMachine> postcopy = sw.andThen(SourceStateMachine::deviceStateStarted)
                .andThen(m -> m.deviceStateSent(1))
                .andThen(m -> m.destinationResumed(null, CompleteIncomingMigrationResponse.getDefaultInstance()));
        Consumer<SourceStateMachine> pass = postcopy.andThen(SourceStateMachine::roundStarted);
        Consumer<SourceStateMachine> paused = postcopy.andThen(m -> m.postcopyConnectionLost("cut"));
        Consumer<SourceStateMachine> verifying = resuming.andThen(
                m -> m.destinationResumed(null, CompleteIncomingMigrationResponse.newBuilder().setMemoryVerified(true)
                        .build()));
        Consumer<SourceStateMachine> matched = verifying.andThen(
                m -> m.verificationCompared(new MemoryVerification(10, 0, 1, 0)));
        Consumer<SourceStateMachine> mismatched = verifying.andThen(
                m -> m.verificationCompared(new MemoryVerification(10, 0, 1, 1)));

        Event[] precopyCommon = {Event.SWITCH_TO_POSTCOPY_REQUESTED, Event.CANCEL, Event.FAIL};
        return List.of(
                scenario("negotiating", H, NEGOTIATING, m -> { }, Event.QUEUED, Event.NEGOTIATED, Event.CANCEL,
                        Event.FAIL),
                scenario("queued", H, Phase.QUEUED, m -> m.queued("2 of 2 outgoing migrations running"),
                        Event.DEQUEUED, Event.CANCEL, Event.FAIL),
                scenario("dequeued", H, NEGOTIATING, m -> {
                    m.queued("destination busy");
                    m.dequeued();
                }, Event.QUEUED, Event.NEGOTIATED, Event.CANCEL, Event.FAIL),
                scenario("precopy, no round yet", H, PRECOPY, neg,
                        concat(precopyCommon, Event.ROUND_STARTED)),
                scenario("precopy, PRECOPY mode", MigrationMode.PRECOPY, PRECOPY, neg,
                        Event.ROUND_STARTED, Event.CANCEL, Event.FAIL),
                scenario("precopy, round running", H, PRECOPY, running,
                        concat(precopyCommon, Event.BATCH_SENT, Event.ROUND_FINISHED)),
                scenario("precopy, round awaiting decision", H, PRECOPY, awaiting,
                        concat(precopyCommon, Event.DECIDE_AFTER_ROUND)),
                scenario("precopy, decided CONTINUE", H, PRECOPY, cont,
                        concat(precopyCommon, Event.ROUND_STARTED)),
                scenario("precopy, decided CONTINUE then switch requested", H, PRECOPY,
                        cont.andThen(SourceStateMachine::requestSwitchToPostcopy),
                        concat(precopyCommon, Event.ROUND_STARTED, Event.DEVICE_STATE_STARTED)),
                scenario("precopy, decided STOP_AND_COPY", H, PRECOPY, stop,
                        concat(precopyCommon, Event.STOP_AND_COPY_STARTED)),
                scenario("precopy, decided SWITCH_TO_POSTCOPY", H, PRECOPY, sw,
                        concat(precopyCommon, Event.DEVICE_STATE_STARTED)),
                scenario("stop-and-copy, round not started", H, STOP_AND_COPY, sac,
                        Event.ROUND_STARTED, Event.CANCEL, Event.FAIL),
                scenario("stop-and-copy, round running", H, STOP_AND_COPY, sacRunning,
                        Event.BATCH_SENT, Event.ROUND_FINISHED, Event.CANCEL, Event.FAIL),
                scenario("stop-and-copy, round done", H, STOP_AND_COPY, sacDone,
                        Event.DEVICE_STATE_STARTED, Event.CANCEL, Event.FAIL),
                scenario("device state", H, DEVICE_STATE, devState,
                        Event.DEVICE_STATE_SENT, Event.CANCEL, Event.FAIL),
                scenario("device state, POSTCOPY mode", MigrationMode.POSTCOPY, DEVICE_STATE, neg,
                        Event.DEVICE_STATE_SENT, Event.CANCEL, Event.FAIL),
                scenario("resuming on destination", H, RESUMING_ON_DESTINATION, resuming,
                        Event.DESTINATION_RESUMED, Event.SWITCHOVER_REFUSED, Event.FAIL),
                scenario("postcopy", H, POSTCOPY, postcopy,
                        Event.ROUND_STARTED, Event.POSTCOPY_FAULT_SERVED, Event.POSTCOPY_PAGES_MISSING,
                        Event.POSTCOPY_CONNECTION_LOST, Event.POSTCOPY_COMPLETED, Event.FAIL),
                scenario("postcopy, background pass running", H, POSTCOPY, pass,
                        Event.BATCH_SENT, Event.ROUND_FINISHED, Event.POSTCOPY_FAULT_SERVED,
                        Event.POSTCOPY_PAGES_MISSING, Event.POSTCOPY_CONNECTION_LOST, Event.FAIL),
                scenario("postcopy paused", H, POSTCOPY_PAUSED, paused,
                        Event.POSTCOPY_FAULT_SERVED, Event.POSTCOPY_PAGES_MISSING, Event.POSTCOPY_CONNECTION_LOST,
                        Event.POSTCOPY_CONNECTION_RESTORED, Event.FAIL),
                scenario("verifying (precopy)", H, VERIFYING, verifying, Event.VERIFICATION_COMPARED, Event.FAIL),
                scenario("verifying (postcopy)", H, VERIFYING, postcopy.andThen(
                        m -> m.postcopyCompleted(null, CompleteIncomingPostcopyResponse.getDefaultInstance())),
                        Event.VERIFICATION_COMPARED, Event.FAIL),
                scenario("verifying, matched", H, VERIFYING, matched,
                        Event.VERIFICATION_COMPARED, Event.COMMITTED, Event.FAIL),
                scenario("verifying, mismatched", H, VERIFYING, mismatched,
                        Event.VERIFICATION_COMPARED, Event.ROLLED_BACK, Event.FAIL),
                scenario("completed", H, COMPLETED, matched.andThen(SourceStateMachine::committed)),
                scenario("rolled back", H, FAILED, mismatched.andThen(SourceStateMachine::rolledBack)),
                scenario("failed", H, FAILED, running.andThen(m -> m.failed("x"))),
                scenario("cancelled", H, CANCELLED, running.andThen(SourceStateMachine::cancelRequested), Event.CANCEL));
    }

    private static Event[] concat(Event[] a, Event... b) {
        return Stream.concat(Stream.of(a), Stream.of(b)).toArray(Event[]::new);
    }

    /** Fires an event with plausible arguments. */
    private static void fire(SourceStateMachine m, Event e) {
        switch (e) {
            case QUEUED -> m.queued("busy");
            case DEQUEUED -> m.dequeued();
            case NEGOTIATED -> m.negotiated(config(m.mode()));
            case ROUND_STARTED -> m.roundStarted();
            case BATCH_SENT -> m.batchSent(10, 1);
            case ROUND_FINISHED -> m.roundFinished(new RoundStats(10, 1, 0, Duration.ofMillis(1)));
            case DECIDE_AFTER_ROUND -> m.decideAfterRound();
            case SWITCH_TO_POSTCOPY_REQUESTED -> m.requestSwitchToPostcopy();
            case STOP_AND_COPY_STARTED -> m.stopAndCopyStarted();
            case DEVICE_STATE_STARTED -> m.deviceStateStarted();
            case DEVICE_STATE_SENT -> m.deviceStateSent(1000);
            case DESTINATION_RESUMED -> m.destinationResumed(null,
                    CompleteIncomingMigrationResponse.getDefaultInstance());
            case SWITCHOVER_REFUSED -> m.switchoverRefused("INTERNAL: restore failed");
            case POSTCOPY_FAULT_SERVED -> m.postcopyFaultServed(1, 0);
            case POSTCOPY_PAGES_MISSING -> m.postcopyPagesMissing(5);
            case POSTCOPY_CONNECTION_LOST -> m.postcopyConnectionLost("cut");
            case POSTCOPY_CONNECTION_RESTORED -> m.postcopyConnectionRestored();
            case POSTCOPY_COMPLETED -> m.postcopyCompleted(null,
                    CompleteIncomingPostcopyResponse.getDefaultInstance());
            case VERIFICATION_COMPARED -> m.verificationCompared(new MemoryVerification(10, 0, 1, 0));
            case COMMITTED -> m.committed();
            case ROLLED_BACK -> m.rolledBack();
            case CANCEL -> m.cancelRequested();
            case FAIL -> m.failed("boom");
        }
    }

    // ------------------------------------------------------------------------------------------ helpers

    private SourceStateMachine inResumingOnDestination() {
        SourceStateMachine m = newMigration(MigrationMode.PRECOPY);
        m.negotiated(config(MigrationMode.PRECOPY));
        m.roundStarted();
        m.roundFinished(quietRound());
        m.decideAfterRound();
        m.stopAndCopyStarted();
        m.roundStarted();
        m.roundFinished(round(0, 0, 1));
        m.deviceStateStarted();
        m.deviceStateSent(100);
        assertEquals(RESUMING_ON_DESTINATION, m.phase());
        return m;
    }

    private SourceStateMachine inPostcopy() {
        SourceStateMachine m = newMigration(MigrationMode.HYBRID);
        m.negotiated(config(MigrationMode.HYBRID));
        m.roundStarted();
        m.roundFinished(busyRound());
        m.decideAfterRound();
        m.requestSwitchToPostcopy();
        m.deviceStateStarted();
        m.deviceStateSent(100);
        m.destinationResumed(null, CompleteIncomingMigrationResponse.getDefaultInstance());
        assertEquals(POSTCOPY, m.phase());
        return m;
    }

    private static Duration seconds(com.google.protobuf.Duration d) {
        return Duration.ofSeconds(d.getSeconds(), d.getNanos());
    }
}
