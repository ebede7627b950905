package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.v1.MigrationProgress;
import dev.ferry.v1.MigrationStatistics;
import java.time.Duration;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class ProgressTrackerTest {
    private final FakeClock clock = new FakeClock();
    private final ProgressTracker t = new ProgressTracker(clock);

    @Test
    void liveCountsShowDuringARoundAndAreReplacedByTheRoundStats() {
        t.bytesRemaining(1000 * 4096);
        assertEquals(1, t.roundStarted());
        t.pagesMoved(300, 100);
        MigrationProgress mid = t.snapshot(Duration.ofMillis(5));
        assertEquals(1, mid.getRound());
        assertEquals(300 * 4096, mid.getBytesSent());
        assertEquals(300, mid.getPagesSent());
        assertEquals(100, mid.getZeroPages());
        assertEquals(600 * 4096, mid.getBytesRemaining(), "remaining shrinks as pages go");
        assertFalse(mid.hasExpectedDowntime(), "unset until a round was measured");

        t.pagesMoved(590, 0);
        t.roundFinished(new RoundStats(900, 100, 50, Duration.ofSeconds(1)));
        MigrationProgress end = t.snapshot(Duration.ofSeconds(1));
        assertEquals(900 * 4096, end.getBytesSent(), "stats replace the live counts, nothing is counted twice");
        assertEquals(100, end.getZeroPages());
        assertEquals(50 * 4096, end.getBytesRemaining());
        assertEquals(Duration.ofSeconds(1).getSeconds(), end.getElapsed().getSeconds());
    }

    @Test
    void estimatesAndFaultsShowInTheSnapshot() {
        t.estimates(new PrecopyPlanner.Estimates(11, 22, 33, Optional.of(Duration.ofMillis(44)), 0));
        t.faultServed(1, 0);
        t.faultServed(0, 512);
        MigrationProgress p = t.snapshot(Duration.ZERO);
        assertEquals(11, p.getDirtyRateBytesPerSecond());
        assertEquals(22, p.getTransferRateBytesPerSecond());
        assertEquals(33, p.getBytesRemaining());
        assertEquals(44_000_000, p.getExpectedDowntime().getNanos());
        assertEquals(2, p.getPostcopyPageFaults());
        assertEquals(4096, p.getBytesSent());
        assertEquals(512, p.getZeroPages());
    }

    @Test
    void throughputRunsFromStartToTheLastPage() {
        var start = clock.instant();
        t.roundStarted();
        clock.advanceMillis(2000);
        t.roundFinished(new RoundStats(1000, 0, 0, Duration.ofSeconds(2)));
        clock.advanceMillis(5000); // nothing sent afterwards: does not dilute the throughput
        MigrationStatistics s = t.statistics(start).build();
        assertEquals(1000 * 4096, s.getTransferredBytes());
        assertEquals(1, s.getRounds());
        assertEquals(1000 * 4096 / 2, s.getThroughputBytesPerSecond());
    }

    @Test
    void misuseIsRefused() {
        assertThrows(IllegalStateException.class, () -> t.roundFinished(new RoundStats(0, 0, 0, Duration.ZERO)));
        t.roundStarted();
        assertThrows(IllegalStateException.class, t::roundStarted);
        assertThrows(IllegalArgumentException.class, () -> t.pagesMoved(-1, 0));
        assertThrows(IllegalArgumentException.class, () -> new RoundStats(1, 0, 0, Duration.ofMillis(-1)));
        assertTrue(t.inRound());
    }

    @Test
    void percentInPlaceAndTimeRemainingFollowTheRates() {
        t.memoryBytes(1000);
        t.bytesRemaining(1000);
        MigrationProgress start = t.snapshot(Duration.ZERO);
        assertEquals(0.0, start.getMemoryInPlacePercent());
        assertFalse(start.hasEstimatedTimeRemaining(), "no rate measured yet");

        // 300 bytes left, sent at 200/s while the guest dirties 100/s: 3 s, plus the 10 ms switchover.
        t.estimates(new PrecopyPlanner.Estimates(100, 200, 300, Optional.of(Duration.ofMillis(10)), 0));
        MigrationProgress p = t.snapshot(Duration.ofSeconds(1));
        assertEquals(70.0, p.getMemoryInPlacePercent());
        assertEquals(3, p.getEstimatedTimeRemaining().getSeconds());
        assertEquals(10_000_000, p.getEstimatedTimeRemaining().getNanos());

        t.estimates(new PrecopyPlanner.Estimates(300, 200, 300, Optional.of(Duration.ofMillis(10)), 1));
        assertFalse(t.snapshot(Duration.ofSeconds(2)).hasEstimatedTimeRemaining(), "not converging: no estimate");

        t.postcopyStarted(); // nothing is dirtied against the transfer any more
        assertEquals(1, t.snapshot(Duration.ofSeconds(3)).getEstimatedTimeRemaining().getSeconds());
    }
}
