package dev.ferry.control.migration;

import dev.ferry.v1.MigrationMode;
import java.time.Duration;
import java.util.Locale;

/**
 * Mode AUTO's choice after the first precopy round: predicts, from the rates that round measured, the time to the
 * switchover and the downtime of plain precopy, of precopy with auto-converge, and of postcopy started now, then
 * picks the first that works in that order (the order of safety: precopy keeps the whole guest on the source
 * until the end; postcopy splits it between two hosts until the push ends). Pure arithmetic, no clock.
 *
 * <p>The model is the planner's: each round sends what the last one left dirty at the transfer rate; the guest
 * dirties at the measured rate meanwhile, never more than the round 1 dirtied (its working set, as far as one round
 * shows it); auto-converge rises as {@link PrecopyPlanner} raises it and cuts the dirty rate by the share of each
 * period the guest is paused beyond {@link #CATCH_UP_MILLIS} (a guest with spare CPU time makes up for a short pause
 * afterwards, as the test guest does for 10 ms; a guest that computes flat out loses all of it, so for it the
 * prediction is pessimistic).
 */
final class ModePredictor {
    /** The part of each throttle pause a guest is assumed to make up for afterwards. */
    static final long CATCH_UP_MILLIS = 10;

    /**
     * What the first round measured.
     *
     * @param sinceCreate  time from create_time to the end of round 1
     * @param sentBytes    data bytes round 1 sent
     * @param dirtyBytes   bytes the guest dirtied during round 1 (what round 2 must send)
     * @param transferRate bytes per second, capped by the bandwidth limit
     * @param dirtyRate    bytes per second
     */
    record FirstRound(Duration sinceCreate, long sentBytes, long dirtyBytes, long transferRate, long dirtyRate) {}

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
        double workingSet = Math.max(r.dirtyBytes(), 1);
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
            double dirtied = Math.min(r.dirtyRate() * (1 - lost) * took, workingSet);
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
