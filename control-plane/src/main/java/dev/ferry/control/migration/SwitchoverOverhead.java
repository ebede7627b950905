package dev.ferry.control.migration;

import dev.ferry.control.vm.VmProtos;
import dev.ferry.v1.DowntimeBreakdown;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Arrays;

/**
 * What a precopy switchover's downtime costs besides its last pages (pause, dirty harvest, device state save and
 * transfer, the request's way to the destination, its resume), learned from this agent's own switchovers. The
 * planner adds it to every downtime estimate; assuming a fixed 20 ms made a {@code max_downtime} under 20 ms
 * unreachable on a host where the switchover takes 5-8 ms.
 *
 * <p>The estimate is the median of the last {@value #WINDOW} switchovers, so that one slow outlier does not hold it
 * up; the agent's very first switchover is not a sample, as it runs cold code (tens of milliseconds; the agent's
 * warm-up makes it, and then a warm one). It never exceeds {@link #DEFAULT}, the value used before any switchover is
 * seen, so learning only ever lets a migration converge sooner than before; a host whose switchovers take longer
 * than that overshoots as it did with the fixed value. Thread-safe.
 */
final class SwitchoverOverhead {
    /** The estimate before any switchover, and its ceiling. */
    static final Duration DEFAULT = Duration.ofMillis(20);
    static final int WINDOW = 9;

    private final ArrayDeque<Long> recent = new ArrayDeque<>(); // nanoseconds, guarded by this
    private boolean warm; // guarded by this: the first switchover was seen (and left out)

    /**
     * Records a completed precopy switchover: its {@code downtime} (pause to the destination's resume, what
     * max_downtime bounds) less the last pages of {@code d}. Not the sum of {@code d}'s steps: its switchover hops
     * include the answer's way back, which the guest, already running, does not wait for (1-5 ms here, enough to
     * keep a 10 ms limit out of reach).
     */
    void record(Duration downtime, DowntimeBreakdown d) {
        Duration overhead = downtime.minus(VmProtos.toJava(d.getLastPages()));
        record(overhead.isNegative() ? Duration.ZERO : overhead);
    }

    synchronized void record(Duration overhead) {
        if (overhead.isNegative()) {
            throw new IllegalArgumentException("overhead must not be negative: " + overhead);
        }
        if (!warm) {
            warm = true;
            return;
        }
        if (recent.size() == WINDOW) {
            recent.removeFirst();
        }
        recent.addLast(overhead.toNanos());
    }

    /** The median of the recent switchovers (the upper one of an even count), at most {@link #DEFAULT}. */
    synchronized Duration estimate() {
        if (recent.isEmpty()) {
            return DEFAULT;
        }
        long[] sorted = recent.stream().mapToLong(Long::longValue).toArray();
        Arrays.sort(sorted);
        Duration median = Duration.ofNanos(sorted[sorted.length / 2]);
        return median.compareTo(DEFAULT) < 0 ? median : DEFAULT;
    }

    /** Switchovers the estimate is taken from. */
    synchronized int samples() {
        return recent.size();
    }

}
