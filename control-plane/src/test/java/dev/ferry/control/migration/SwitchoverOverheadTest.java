package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.ferry.control.vm.VmProtos;
import dev.ferry.v1.DowntimeBreakdown;
import java.time.Duration;
import org.junit.jupiter.api.Test;

class SwitchoverOverheadTest {
    private static Duration ms(long n) {
        return Duration.ofMillis(n);
    }

    @Test
    void theDefaultHoldsUntilAWarmSwitchoverIsSeen() {
        SwitchoverOverhead o = new SwitchoverOverhead();
        assertEquals(SwitchoverOverhead.DEFAULT, o.estimate());
        o.record(ms(3)); // the agent's first: cold code, not a sample
        assertEquals(SwitchoverOverhead.DEFAULT, o.estimate());
        assertEquals(0, o.samples());
        o.record(ms(6));
        assertEquals(ms(6), o.estimate());
    }

    @Test
    void theMedianOfTheRecentWindowIgnoresOneOutlierAndNeverExceedsTheDefault() {
        SwitchoverOverhead o = new SwitchoverOverhead();
        o.record(ms(90));
        o.record(ms(5));
        o.record(ms(70)); // one slow switchover
        o.record(ms(7));
        assertEquals(ms(7), o.estimate(), "upper median of 5, 7, 70");
        for (int i = 0; i < SwitchoverOverhead.WINDOW; i++) {
            o.record(ms(40));
        }
        assertEquals(SwitchoverOverhead.DEFAULT, o.estimate(), "capped: learning only ever lowers the estimate");
        for (int i = 0; i < SwitchoverOverhead.WINDOW / 2 + 1; i++) {
            o.record(ms(4));
        }
        assertEquals(ms(4), o.estimate(), "older switchovers leave the window");
        assertEquals(SwitchoverOverhead.WINDOW, o.samples());
    }

    @Test
    void theDowntimeCountsLessItsLastPagesAndNotTheAnswersWayBack() {
        SwitchoverOverhead o = new SwitchoverOverhead();
        o.record(ms(1));
        // 60 ms from pause to resume, 50 of them last pages; the hops (request and answer) sum to more than
        // the 10 ms left, as the answer's way back is not downtime.
        o.record(ms(60), DowntimeBreakdown.newBuilder().setPause(VmProtos.duration(100_000))
                .setDirtyHarvest(VmProtos.duration(200_000)).setLastPages(VmProtos.duration(50_000_000))
                .setDeviceStateSave(VmProtos.duration(3_000_000)).setDeviceStateTransfer(VmProtos.duration(50_000))
                .setSwitchoverHops(VmProtos.duration(6_000_000)).setDestinationResume(VmProtos.duration(2_650_000))
                .build());
        assertEquals(ms(10), o.estimate());
    }
}
