package dev.ferry.control.migration;

import dev.ferry.v1.MigrationMode;
import java.time.Duration;
import java.util.Locale;

/**
 * Mode AUTO's choice after the first precopy round: predicts the time to the switchover and the downtime of plain
 * precopy, of precopy with auto-converge, and of postcopy started now, then picks the first that meets max_downtime
 * in that order (the order of safety: precopy keeps the whole guest on the source until the end; postcopy splits
 * it between two hosts until the push ends). Pure arithmetic, no clock.
 *
 * <p>The model is the planner's: each round sends what the last one left dirty at the transfer rate the first round
 * measured. What the guest dirties in a round of {@code t} seconds is {@code W (1 - exp(-w t / W))}: it writes
 * {@code w} bytes per second (the short sample taken before round 1, where few writes hit a page twice) at random
 * over a working set of {@code W} bytes, which is solved from what it dirtied during the long first round. Auto-
 * converge rises as {@link PrecopyPlanner} raises it and cuts {@code w} by the share of each period the guest is
 * paused beyond {@link #CATCH_UP_MILLIS} (a guest with spare CPU time makes up for a short pause afterwards, as the
 * test guest does for 10 ms; one that computes flat out loses all of it, so for it the prediction is pessimistic).
 */
final class ModePredictor {
    /** The part of each throttle pause a guest is assumed to make up for afterwards. */
    static final long CATCH_UP_MILLIS = 10;

    /**
     * What the first round measured.
     *
     * @param sinceCreate  time from create_time to the end of round 1
     * @param roundTime    how long round 1 took
     * @param sentBytes    data bytes round 1 sent
     * @param dirtyBytes   bytes the guest dirtied during round 1 (what round 2 must send)
     * @param transferRate bytes per second, capped by the bandwidth limit
     * @param dirtyRate    bytes dirtied per second over round 1 (distinct pages: lower than the write rate when the
     *                     guest writes some pages twice)
     * @param writeRate    bytes per second the guest wrote in the sample before round 1; 0 if none was taken
     */
    record FirstRound(Duration sinceCreate, Duration roundTime, long sentBytes, long dirtyBytes, long transferRate,
                      long dirtyRate, long writeRate) {}

    /** One mode's prediction; total and downtime are meaningful only when it converges. */
    record Prediction(boolean converges, Duration total, Duration downtime, int rounds) {}

    /** The pick, with each mode's prediction. */
    record Choice(MigrationMode mode, boolean autoConverge, Prediction picked, String reason, FirstRound measured) {}

    private ModePredictor() {}

    static Choice choose(FirstRound r, ConvergencePolicy policy, Duration overhead) {
        ConvergencePolicy.AutoConverge throttle = policy.autoConverge().enabled() ? policy.autoConverge()
                : ConvergencePolicy.AutoConverge.DEFAULTS;
        Prediction plain = precopy(r, policy, overhead, null);
        Prediction throttled = precopy(r, policy, overhead, throttle);
        Prediction postcopy = postcopy(r, overhead);
        String rates = String.format(Locale.ROOT, "transfer rate %s, dirty rate %s", ProtoTime.formatRate(r.transferRate()),
                ProtoTime.formatRate(r.dirtyRate()));
        String each = "precopy: " + describe(plain, policy) + "; with auto-converge: " + describe(throttled, policy)
                + "; postcopy: " + describe(postcopy, policy);
        if (plain.converges() && !policy.autoConverge().enabled()) {
            return new Choice(MigrationMode.PRECOPY, false, plain, "precopy meets max_downtime (" + rates + "); " + each, r);
        }
        if (throttled.converges()) {
            return new Choice(MigrationMode.PRECOPY, true, throttled, (policy.autoConverge().enabled()
                    ? "precopy with the policy's auto-converge meets max_downtime (" : "precopy meets max_downtime only"
                    + " with auto-converge (") + rates + "); " + each, r);
        }
        return new Choice(MigrationMode.POSTCOPY, false, postcopy, "precopy would not meet max_downtime, even with"
                + " auto-converge (" + rates + "): postcopy now; " + each, r);
    }

    private static String describe(Prediction p, ConvergencePolicy policy) {
        if (!p.converges()) {
            return "no convergence in " + policy.maxRounds() + " rounds";
        }
        return "total " + ProtoTime.format(p.total()) + ", downtime " + ProtoTime.format(p.downtime());
    }

    /** Rounds 2 and on, as the planner would run them; {@code throttle} null for none. */
    static Prediction precopy(FirstRound r, ConvergencePolicy policy, Duration overhead, ConvergencePolicy.AutoConverge throttle) {
        if (r.transferRate() <= 0) {
            return new Prediction(false, Duration.ZERO, Duration.ZERO, 1);
        }
        double rate = r.transferRate();
        double write = Math.max(r.writeRate(), r.dirtyRate());
        double workingSet = workingSet(r, write);
        double left = r.dirtyBytes();
        double seconds = 0;
        double limit = policy.maxDowntime().toNanos() / 1e9;
        double fixed = overhead.toNanos() / 1e9;
        int hot = r.dirtyBytes() * 2 > r.sentBytes() ? 1 : 0; // round 1 counts, as in the planner
        int percent = 0;
        for (int round = 1; round < policy.maxRounds(); round++) {
            double down = left / rate + fixed;
            if (down <= limit) {
                return new Prediction(true, r.sinceCreate().plus(nanos(seconds + down)), nanos(down), round + 1);
            }
            double took = left / rate;
            double lost = Math.max(0, GuestThrottle.PERIOD_MILLIS * percent / 100.0 - CATCH_UP_MILLIS)
                    / GuestThrottle.PERIOD_MILLIS;
            double dirtied = dirtied(write * (1 - lost), took, workingSet);
            if (throttle != null) {
                hot = dirtied * 2 > left ? hot + 1 : 0;
                if (hot >= 2) {
                    hot = 0;
                    percent = percent == 0 ? throttle.initialPercent()
                            : Math.min(throttle.maxPercent(), percent + throttle.incrementPercent());
                }
            }
            seconds += took;
            left = dirtied;
        }
        return new Prediction(false, Duration.ZERO, Duration.ZERO, policy.maxRounds());
    }

    /** Bytes a guest writing {@code write} per second at random over {@code workingSet} bytes dirties in {@code t} s. */
    static double dirtied(double write, double t, double workingSet) {
        return Double.isInfinite(workingSet) ? write * t : workingSet * -Math.expm1(-write * t / workingSet);
    }

    /**
     * The working set that makes a guest writing {@code write} per second dirty what round 1 saw it dirty: infinite
     * (no page written twice, as far as the rates show) when round 1 dirtied at least {@code write} per second.
     */
    static double workingSet(FirstRound r, double write) {
        double t1 = r.roundTime().toNanos() / 1e9;
        double seen = r.dirtyBytes();
        if (t1 <= 0 || seen <= 0 || seen >= write * t1 * 0.999) {
            return Double.POSITIVE_INFINITY;
        }
        double lo = seen;
        double hi = seen;
        while (dirtied(write, t1, hi) < seen) {
            hi *= 2;
        }
        for (int i = 0; i < 60; i++) { // bisection: dirtied() grows with the working set
            double mid = (lo + hi) / 2;
            if (dirtied(write, t1, mid) < seen) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return hi;
    }

    /** Postcopy from now: a pause for device state, then the pages dirtied since their copy are pushed (or faulted). */
    static Prediction postcopy(FirstRound r, Duration overhead) {
        if (r.transferRate() <= 0) {
            return new Prediction(false, Duration.ZERO, Duration.ZERO, 1);
        }
        double push = (double) r.dirtyBytes() / r.transferRate();
        return new Prediction(true, r.sinceCreate().plus(overhead).plus(nanos(push)), overhead, 2);
    }

    private static Duration nanos(double seconds) {
        return Duration.ofNanos((long) Math.min(seconds * 1e9, Long.MAX_VALUE / 2.0));
    }
}
