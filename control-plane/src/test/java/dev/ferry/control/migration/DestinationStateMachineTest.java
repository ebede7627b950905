package dev.ferry.control.migration;

import static dev.ferry.control.migration.Fixtures.GUEST_MEMORY;
import static dev.ferry.control.migration.Fixtures.config;
import static dev.ferry.control.migration.DestinationStateMachine.State.ABORTED;
import static dev.ferry.control.migration.DestinationStateMachine.State.COMPLETED;
import static dev.ferry.control.migration.DestinationStateMachine.State.DEVICE_STATE_RECEIVED;
import static dev.ferry.control.migration.DestinationStateMachine.State.FAILED;
import static dev.ferry.control.migration.DestinationStateMachine.State.POSTCOPY;
import static dev.ferry.control.migration.DestinationStateMachine.State.POSTCOPY_PAUSED;
import static dev.ferry.control.migration.DestinationStateMachine.State.RECEIVING;
import static dev.ferry.control.migration.DestinationStateMachine.State.VERIFYING;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.ferry.control.migration.DestinationStateMachine.Event;
import dev.ferry.control.migration.DestinationStateMachine.State;
import dev.ferry.v1.Migration.Phase;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationProgress;
import dev.ferry.v1.PostcopyStatistics;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.function.Consumer;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

class DestinationStateMachineTest {
    private final FakeClock clock = new FakeClock();

    private DestinationStateMachine session(MigrationMode mode) {
        return new DestinationStateMachine(config(mode), clock);
    }

    private static List<State> states(DestinationStateMachine m) {
        return m.history().stream().map(PhaseChange::phase).toList();
    }

    @Test
    void precopySessionCompletesAndAnswersARepeatedCompleteTheSameWay() {
        DestinationStateMachine m = session(MigrationMode.PRECOPY);
        assertEquals(RECEIVING, m.state());
        assertEquals(Phase.PRECOPY, m.phase());
        m.pagesReceived(1, false, 1000, 24);
        m.pagesReceived(2, false, 10, 0);
        MigrationProgress p = m.progress();
        assertEquals(2, p.getRound());
        assertEquals(1010 * 4096, p.getBytesSent());
        assertEquals(GUEST_MEMORY - 1034 * 4096, p.getBytesRemaining());
        m.deviceStateReceived(5000);
        assertEquals(Phase.DEVICE_STATE, m.phase());
        assertTrue(m.completeRequested(false));
        assertEquals(VERIFYING, m.state(), "MEMORY_DIGEST accepted: the source verifies before the VM is ours");
        assertEquals(Phase.VERIFYING, m.phase());
        assertTrue(m.vmRanHere());
        assertFalse(m.completeRequested(false), "a retried CompleteIncomingMigration is answered again");
        IllegalTransitionException e = assertThrows(IllegalTransitionException.class,
                () -> m.completeRequested(true));
        assertTrue(e.reason().contains("postcopy = false"), e.reason());
        clock.advance(Duration.ofHours(1));
        assertFalse(m.checkIdle(), "a VM that runs here is never aborted for idleness, verifying or not");
        m.verifyRequested();
        m.verifyRequested(); // the source may ask again
        assertTrue(m.commitRequested());
        assertEquals(COMPLETED, m.state());
        assertFalse(m.commitRequested(), "a retried CommitIncomingMigration is answered again");
        assertEquals(List.of(RECEIVING, DEVICE_STATE_RECEIVED, VERIFYING, COMPLETED), states(m));
        assertEquals(5000, m.deviceStateBytes());
        assertTrue(m.aftermath().isEmpty());
    }

    @Test
    void postcopySessionWithALinkCutAndRecovery() {
        DestinationStateMachine m = session(MigrationMode.HYBRID);
        m.pagesReceived(1, false, 100, 0);
        m.deviceStateReceived(10);
        clock.advanceMillis(1);
        assertTrue(m.completeRequested(true));
        assertEquals(POSTCOPY, m.state());
        assertFalse(m.completeRequested(true), "repeat");
        m.faultSent();
        m.pagesReceived(2, true, 50, 3);
        assertTrue(m.linkLost("pager stream reset"));
        assertFalse(m.linkLost("data plane reset"));
        assertEquals(Phase.POSTCOPY_PAUSED, m.phase());
        assertFalse(m.accepts(Event.PAGES_RECEIVED));
        m.faultSent(); // a vCPU faults while paused: queued, counted
        m.resumeRequested();
        assertEquals(POSTCOPY, m.state());
        m.resumeRequested(); // the source may resume before this side noticed a cut
        m.pagesReceived(3, true, 10, 0);
        IllegalTransitionException e = assertThrows(IllegalTransitionException.class,
                () -> m.postcopyCompleteRequested(3));
        assertTrue(e.getMessage().contains("3 pages are still missing"), e.getMessage());
        assertEquals(POSTCOPY, m.state());
        clock.advanceMillis(99);
        m.postcopyCompleteRequested(0);
        assertEquals(VERIFYING, m.state());
        clock.advanceMillis(50); // verifying: not part of resume_time
        m.commitRequested();
        assertEquals(COMPLETED, m.state());
        PostcopyStatistics s = m.postcopyStatistics().build();
        assertEquals(2, s.getPageFaults());
        assertEquals(60 * 4096, s.getBackgroundBytes());
        assertEquals(2, s.getRecoveries());
        assertEquals(99_000_000, s.getResumeTime().getNanos());
        assertEquals(List.of(RECEIVING, DEVICE_STATE_RECEIVED, POSTCOPY, POSTCOPY_PAUSED, POSTCOPY, POSTCOPY,
                VERIFYING, COMPLETED), states(m));
    }

    @Test
    void aFailedVerificationDiscardsTheVmThatRanHere() {
        for (boolean postcopy : new boolean[] {false, true}) {
            DestinationStateMachine m = session(MigrationMode.HYBRID);
            m.deviceStateReceived(1);
            m.completeRequested(postcopy);
            if (postcopy) {
                m.postcopyCompleteRequested(0);
            }
            m.verifyRequested();
            assertEquals(Aftermath.SOURCE_KEEPS_VM, m.abortRequested("memory verification failed"),
                    "the source resumes its paused original; what ran here is discarded");
            assertEquals(ABORTED, m.state());
            assertTrue(m.vmRanHere());
            assertFalse(m.accepts(Event.COMMIT));
        }
    }

    @Test
    void withoutMemoryDigestTheVmIsOursAtOnce() {
        DestinationStateMachine m = new DestinationStateMachine(config(MigrationMode.PRECOPY).toBuilder()
                .clearFeatures().build(), clock);
        assertFalse(m.verifies());
        m.deviceStateReceived(1);
        m.completeRequested(false);
        assertEquals(COMPLETED, m.state());
        assertFalse(m.accepts(Event.COMMIT), "nothing to commit");
        assertFalse(m.accepts(Event.ABORT));
    }

    @Test
    void postcopyNeedsTheAcceptedFeature() {
        DestinationStateMachine m = session(MigrationMode.PRECOPY);
        m.deviceStateReceived(1);
        IllegalTransitionException e = assertThrows(IllegalTransitionException.class,
                () -> m.completeRequested(true));
        assertTrue(e.reason().contains("POSTCOPY feature"), e.reason());
        assertEquals(DEVICE_STATE_RECEIVED, m.state());
    }

    @Test
    void pagesMustCarryThePostcopyFlagOfTheState() {
        DestinationStateMachine m = session(MigrationMode.HYBRID);
        assertThrows(IllegalTransitionException.class, () -> m.pagesReceived(1, true, 1, 0));
        m.deviceStateReceived(1);
        m.completeRequested(true);
        IllegalTransitionException e = assertThrows(IllegalTransitionException.class,
                () -> m.pagesReceived(2, false, 1, 0));
        assertEquals(Event.PAGES_RECEIVED, e.event());
        assertEquals(0, m.progress().getPagesSent());
    }

    @Test
    void abortBeforeTheVmRanDiscardsItAndIsIdempotent() {
        for (boolean afterDeviceState : new boolean[] {false, true}) {
            DestinationStateMachine m = session(MigrationMode.PRECOPY);
            if (afterDeviceState) {
                m.deviceStateReceived(1);
            }
            assertEquals(Aftermath.SOURCE_KEEPS_VM, m.abortRequested("CANCELLED: cancelled by the caller"));
            assertEquals(ABORTED, m.state());
            assertEquals(Phase.CANCELLED, m.phase());
            int entries = m.history().size();
            assertEquals(Aftermath.SOURCE_KEEPS_VM, m.abortRequested("again"));
            assertEquals(entries, m.history().size());
            assertTrue(m.failureReason().orElseThrow().contains("cancelled by the caller"));
        }
    }

    @Test
    void abortIsRefusedOnceTheVmRanHere() {
        DestinationStateMachine m = session(MigrationMode.HYBRID);
        m.deviceStateReceived(1);
        m.completeRequested(true);
        IllegalTransitionException e = assertThrows(IllegalTransitionException.class, () -> m.abortRequested("x"));
        assertTrue(e.reason().contains("already runs the VM"), e.reason());
        m.failed("digest mismatch");
        assertEquals(Aftermath.DESTINATION_KEEPS_VM, m.aftermath().orElseThrow());
        assertThrows(IllegalTransitionException.class, () -> m.abortRequested("x"));
    }

    @Test
    void idleSessionIsAbortedAfterSixtySeconds() {
        DestinationStateMachine m = session(MigrationMode.PRECOPY);
        clock.advance(Duration.ofSeconds(59));
        assertFalse(m.checkIdle());
        m.pagesReceived(1, false, 1, 0); // activity resets the timer
        clock.advance(Duration.ofSeconds(59));
        assertFalse(m.checkIdle());
        m.deviceStateReceived(1);
        clock.advance(Duration.ofSeconds(60));
        assertTrue(m.checkIdle());
        assertEquals(ABORTED, m.state());
        assertEquals(Aftermath.SOURCE_KEEPS_VM, m.aftermath().orElseThrow());
        assertTrue(m.failureReason().orElseThrow().contains("60.000 s"), m.failureReason().orElseThrow());
        assertFalse(m.checkIdle());
    }

    @Test
    void aRunningVmIsNeverAbortedForIdleness() {
        DestinationStateMachine m = session(MigrationMode.HYBRID);
        m.deviceStateReceived(1);
        m.completeRequested(true);
        clock.advance(Duration.ofHours(1));
        assertFalse(m.checkIdle());
        assertEquals(POSTCOPY, m.state());
    }

    @TestFactory
    Stream<DynamicTest> failureInEveryNonTerminalStateKeepsTheReason() {
        return scenarios().stream().filter(s -> !s.state.isTerminal()).map(s -> dynamicTest(s.name, () -> {
            DestinationStateMachine m = s.build(new FakeClock());
            Aftermath a = m.failed("local error in " + s.name);
            assertEquals(FAILED, m.state());
            assertEquals("local error in " + s.name, m.failureReason().orElseThrow());
            assertEquals(s.state == RECEIVING || s.state == DEVICE_STATE_RECEIVED
                    ? Aftermath.SOURCE_KEEPS_VM : Aftermath.DESTINATION_KEEPS_VM, a);
        }));
    }

    @TestFactory
    Stream<DynamicTest> everyEventIsAcceptedExactlyWhereTheTableSays() {
        List<DynamicTest> tests = new ArrayList<>();
        for (Scenario s : scenarios()) {
            for (Event e : Event.values()) {
                boolean valid = s.expected.contains(e);
                tests.add(dynamicTest(s.name + " / " + e + (valid ? " accepted" : " refused"), () -> {
                    DestinationStateMachine m = s.build(new FakeClock());
                    assertEquals(s.state, m.state());
                    assertEquals(valid, m.accepts(e), () -> "accepts(" + e + "): " + m.refusal(e));
                    if (valid) {
                        fire(m, e);
                        return;
                    }
                    int entries = m.history().size();
                    IllegalTransitionException ex = assertThrows(IllegalTransitionException.class, () -> fire(m, e));
                    assertEquals(s.state, ex.phase());
                    assertEquals(e, ex.event());
                    assertTrue(ex.getMessage().contains(s.state.name()), ex.getMessage());
                    assertEquals(s.state, m.state());
                    assertEquals(entries, m.history().size());
                }));
            }
        }
        return tests.stream();
    }

    private record Scenario(String name, MigrationMode mode, State state, Consumer<DestinationStateMachine> steps,
                            Set<Event> expected) {
        DestinationStateMachine build(FakeClock clock) {
            DestinationStateMachine m = new DestinationStateMachine(config(mode), clock);
            steps.accept(m);
            return m;
        }
    }

    private static Scenario scenario(String name, MigrationMode mode, State state, Consumer<DestinationStateMachine> steps,
                                     Event... expected) {
        Set<Event> set = EnumSet.noneOf(Event.class);
        set.addAll(List.of(expected));
        return new Scenario(name, mode, state, steps, set);
    }

    private static List<Scenario> scenarios() {
        MigrationMode h = MigrationMode.HYBRID;
        Consumer<DestinationStateMachine> ds = m -> m.deviceStateReceived(1);
        Consumer<DestinationStateMachine> pc = ds.andThen(m -> m.completeRequested(true));
        Consumer<DestinationStateMachine> paused = pc.andThen(m -> m.linkLost("cut"));
        Consumer<DestinationStateMachine> verifying = ds.andThen(m -> m.completeRequested(false));
        Consumer<DestinationStateMachine> pcVerifying = pc.andThen(m -> m.postcopyCompleteRequested(0));
        return List.of(
                scenario("receiving", h, RECEIVING, m -> { },
                        Event.PAGES_RECEIVED, Event.DEVICE_STATE_RECEIVED, Event.ABORT, Event.FAIL),
                scenario("device state received", h, DEVICE_STATE_RECEIVED, ds,
                        Event.COMPLETE, Event.ABORT, Event.FAIL),
                scenario("postcopy", h, POSTCOPY, pc, Event.PAGES_RECEIVED, Event.COMPLETE, Event.FAULT_SENT,
                        Event.LINK_LOST, Event.RESUME, Event.POSTCOPY_COMPLETE, Event.FAIL),
                scenario("postcopy paused", h, POSTCOPY_PAUSED, paused, Event.COMPLETE, Event.FAULT_SENT,
                        Event.LINK_LOST, Event.RESUME, Event.FAIL),
                scenario("verifying (precopy)", MigrationMode.PRECOPY, VERIFYING, verifying,
                        Event.COMPLETE, Event.VERIFY, Event.COMMIT, Event.ABORT, Event.FAIL),
                scenario("verifying (postcopy)", h, VERIFYING, pcVerifying,
                        Event.COMPLETE, Event.VERIFY, Event.COMMIT, Event.ABORT, Event.FAIL),
                scenario("completed (precopy)", MigrationMode.PRECOPY, COMPLETED,
                        verifying.andThen(DestinationStateMachine::commitRequested), Event.COMPLETE, Event.COMMIT),
                scenario("completed (postcopy)", h, COMPLETED, pcVerifying.andThen(DestinationStateMachine::commitRequested),
                        Event.COMPLETE, Event.COMMIT),
                scenario("aborted", h, ABORTED, m -> m.abortRequested("x"), Event.ABORT),
                scenario("failed before running", h, FAILED, m -> m.failed("x"), Event.ABORT),
                scenario("failed after running", h, FAILED, pc.andThen(m -> m.failed("x"))));
    }

    /** Fires an event with arguments that fit the state when the event is valid there. */
    private static void fire(DestinationStateMachine m, Event e) {
        switch (e) {
            case PAGES_RECEIVED -> m.pagesReceived(1, m.state() == POSTCOPY, 1, 0);
            case DEVICE_STATE_RECEIVED -> m.deviceStateReceived(1);
            case COMPLETE -> m.completeRequested(m.state() == DEVICE_STATE_RECEIVED
                    || m.state() == POSTCOPY || m.state() == POSTCOPY_PAUSED
                    || m.history().stream().anyMatch(c -> c.phase() == POSTCOPY));
            case FAULT_SENT -> m.faultSent();
            case LINK_LOST -> m.linkLost("cut");
            case RESUME -> m.resumeRequested();
            case POSTCOPY_COMPLETE -> m.postcopyCompleteRequested(0);
            case VERIFY -> m.verifyRequested();
            case COMMIT -> m.commitRequested();
            case ABORT -> m.abortRequested("x");
            case FAIL -> m.failed("x");
        }
    }
}
