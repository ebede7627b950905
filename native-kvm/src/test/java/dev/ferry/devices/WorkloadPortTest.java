package dev.ferry.devices;

import static dev.ferry.guest.GuestAbi.CMD_NONE;
import static dev.ferry.guest.GuestAbi.CMD_SELF_CHECK;
import static dev.ferry.guest.GuestAbi.EVENT_BAD_PARAMS;
import static dev.ferry.guest.GuestAbi.EVENT_FILL_DONE;
import static dev.ferry.guest.GuestAbi.EVENT_STARTED;
import static dev.ferry.guest.GuestAbi.PORT_EVENT;
import static dev.ferry.guest.GuestAbi.PORT_PROGRESS;
import static dev.ferry.guest.GuestAbi.PORT_RESULT;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.kvm.state.v1.WorkloadPortState;
import dev.ferry.state.StateException;
import dev.ferry.vm.GuestProbe.ReportStats;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** The workload port driven as the guest's vCPUs drive it, on a hand-set clock, and across save → restore. */
class WorkloadPortTest {
    final AtomicLong now = new AtomicLong(1_000);

    @Test
    void reportsAreCountedAndTheLargestGapSinceTheLastResetIsKept() {
        WorkloadPort port = new WorkloadPort(2, now::get);
        assertEquals(CMD_NONE, report(port, 0));
        assertEquals(new ReportStats(1, 1_000, 1_000, 0), port.reportStats());
        at(1_500, () -> report(port, 1));
        at(4_500, () -> report(port, 0));
        at(5_000, () -> report(port, 1));
        assertEquals(new ReportStats(4, 5_000, 1_000, 3_000), port.reportStats());

        assertEquals(0, port.read(0, PORT_RESULT, 4), "only PORT_PROGRESS reports");
        assertEquals(0, port.read(2, PORT_PROGRESS, 4), "nor do vCPUs the VM does not have");
        assertEquals(4, port.reportStats().reports());

        at(6_000, port::resetGapTracking);
        assertEquals(new ReportStats(4, 5_000, -1, 0), port.reportStats());
        at(9_000, () -> report(port, 0));
        assertEquals(new ReportStats(5, 9_000, 9_000, 0), port.reportStats(), "the gap across a reset is not kept");
        at(9_200, () -> report(port, 1));
        assertEquals(200, port.reportStats().maxGapNanos());
    }

    @Test
    void eachVcpuTakesTheSelfCheckOnceAndTheResultsAreSummed() {
        WorkloadPort port = new WorkloadPort(3, now::get);
        CompletableFuture<Long> check = port.requestSelfCheck();
        assertEquals(CMD_SELF_CHECK, report(port, 0));
        assertEquals(CMD_NONE, report(port, 0), "a command is handed out once");
        CompletableFuture<Long> joined = port.requestSelfCheck();
        assertEquals(CMD_SELF_CHECK, report(port, 1), "joining does not restart the check");
        result(port, 0, 2);
        result(port, 1, 0);
        assertFalse(check.isDone());
        assertEquals(CMD_SELF_CHECK, report(port, 2));
        result(port, 2, 5);
        assertEquals(7L, check.getNow(null));
        assertEquals(7L, joined.getNow(null));
        assertEquals(7, port.lastCheckWrong());

        result(port, 0, 9);
        assertEquals(7, port.lastCheckWrong(), "a result with no check in progress is ignored");
        CompletableFuture<Long> next = port.requestSelfCheck();
        result(port, 0, -1); // u32 0xffffffff
        result(port, 1, 1);
        result(port, 2, 0);
        assertEquals(0x1_0000_0000L, next.getNow(null), "results are unsigned and the sum starts afresh");
    }

    @Test
    void eventsCountStartedAndFilledVcpusAndFlagBadParameters() throws InterruptedException {
        WorkloadPort port = new WorkloadPort(2, now::get);
        event(port, EVENT_STARTED);
        event(port, EVENT_STARTED);
        event(port, EVENT_FILL_DONE);
        event(port, 77); // unknown: ignored
        assertFalse(port.awaitFillDone(Duration.ZERO));
        event(port, EVENT_FILL_DONE);
        assertTrue(port.awaitFillDone(Duration.ZERO));
        WorkloadPortState s = port.saveState();
        assertEquals(2, s.getStartedVcpus());
        assertEquals(2, s.getFillDoneVcpus());
        assertFalse(port.badParams());
        event(port, EVENT_BAD_PARAMS);
        assertTrue(port.badParams());
        assertThrows(IllegalStateException.class, () -> port.awaitFillDone(Duration.ZERO));
    }

    @Test
    void aSelfCheckSavedHalfwayFinishesAfterTheRestoreWithTheRightSum() throws Exception {
        WorkloadPort source = new WorkloadPort(3, now::get);
        for (int i = 0; i < 3; i++) {
            event(source, EVENT_STARTED);
            event(source, EVENT_FILL_DONE);
        }
        source.requestSelfCheck();
        report(source, 0);
        result(source, 0, 4); // vCPU 0 answered
        report(source, 1); // vCPU 1 is checking; vCPU 2 has not taken the command yet
        WorkloadPortState saved = source.saveState();
        assertEquals(saved, SectionRoundTrip.throughJson(source, saved));
        WorkloadPortState carried = SectionRoundTrip.throughBytes(source, saved);
        assertEquals(saved, carried);

        WorkloadPort target = new WorkloadPort(3, now::get);
        target.validateState(carried);
        target.restoreState(carried);
        assertEquals(saved, target.saveState());
        CompletableFuture<Long> check = target.requestSelfCheck(); // joins the check in progress
        assertEquals(CMD_NONE, report(target, 0));
        assertEquals(CMD_NONE, report(target, 1));
        assertEquals(CMD_SELF_CHECK, report(target, 2));
        result(target, 1, 3);
        assertFalse(check.isDone());
        result(target, 2, 1);
        assertEquals(8L, check.getNow(null));
        assertEquals(8, target.lastCheckWrong());
        assertEquals(1, target.saveState().getChecksCompleted());
        assertTrue(target.awaitFillDone(Duration.ZERO));
    }

    @Test
    void validateStateRefusesAStateForAnotherVcpuCountAndNothingChanges() {
        WorkloadPort port = new WorkloadPort(2, now::get);
        port.requestSelfCheck();
        report(port, 0);
        at(3_000, () -> report(port, 1));
        WorkloadPortState before = port.saveState();
        ReportStats statsBefore = port.reportStats();
        WorkloadPortState forThree = new WorkloadPort(3, now::get).saveState();

        StateException e = assertThrows(StateException.class, () -> port.validateState(forThree));
        assertTrue(e.getMessage().contains("device.workload")
                && e.getMessage().contains("pending_commands: 3 entries (one per vCPU), this VM has 2 vCPUs"),
                e.getMessage());
        assertThrows(StateException.class, () -> port.restoreState(forThree));
        assertEquals(before, port.saveState());
        assertEquals(statsBefore, port.reportStats());
    }

    @Test
    void theFirstReportAfterARestoreMeasuresThePause() throws StateException {
        WorkloadPort source = new WorkloadPort(1, now::get);
        report(source, 0);
        at(2_000, () -> report(source, 0));
        WorkloadPortState saved = SectionRoundTrip.throughBytes(source, source.saveState());

        WorkloadPort target = new WorkloadPort(1, now::get);
        at(2_200, target::resetGapTracking); // a window of the target's own, with reports and a gap in it
        at(2_500, () -> report(target, 0));
        at(3_000, () -> report(target, 0));
        now.set(5_000); // the state arrives
        target.restoreState(saved);
        assertEquals(new ReportStats(2, 2_000, -1, 0), target.reportStats());
        at(6_000, () -> report(target, 0));
        assertEquals(new ReportStats(3, 6_000, 6_000, 4_000), target.reportStats());
        at(6_100, () -> report(target, 0));
        assertEquals(4_000, target.reportStats().maxGapNanos());
    }

    /** Sets the clock to {@code t}, then does {@code action}. */
    private void at(long t, Runnable action) {
        now.set(t);
        action.run();
    }

    private static int report(WorkloadPort port, int vcpu) {
        return port.read(vcpu, PORT_PROGRESS, 4);
    }

    private static void result(WorkloadPort port, int vcpu, int wrongPages) {
        port.write(vcpu, PORT_RESULT, 4, wrongPages);
    }

    private static void event(WorkloadPort port, int event) {
        port.write(0, PORT_EVENT, 4, event);
    }
}
