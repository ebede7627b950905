package dev.ferry.control.migration;

import dev.ferry.control.migration.Decision.Action;
import dev.ferry.v1.MigrationPolicy.NoConvergenceAction;
import java.time.Duration;
import java.util.Objects;
import java.util.Optional;

/**
 * Decides, after each precopy round, whether to run another round, stop and copy, switch to postcopy or fail.
 * Pure arithmetic over the rounds it is fed; it reads no clock (the caller passes the time since create_time).
 *
 * <h2>Estimates (updated by {@link #recordRound})</h2>
 * <ul>
 *   <li><b>Transfer rate</b>: the round's page bytes divided by its time, smoothed as
 *       {@code rate = a * sample + (1 - a) * rate} with {@code a = }{@link Tuning#rateSmoothing()}. The default
 *       {@code a = 1} uses the last round alone, which is what {@code MigrationProgress} documents ("during the last
 *       full round") and what QEMU does; lower it to damp noisy networks. A round that sent less than
 *       {@link Tuning#minRateSampleBytes()} (default 1 MiB) does not update the transfer rate once one is known: its
 *       time is dominated by per-batch latency, and the last rounds of a converging migration are exactly such rounds.
 *       Rounds with no data or no measurable time are never samples. The estimate is then capped at
 *       {@code bandwidth_limit_bytes_per_second} when one is set, since the sender will not go faster.</li>
 *   <li><b>Dirty rate</b>: pages dirtied during the round times 4096 divided by the round's time, smoothed the same
 *       way (every round with a measurable time is a sample).</li>
 *   <li><b>Remaining</b>: the pages dirtied during the last round, times 4096 (what the next round, or the
 *       stop-and-copy round, must send; an upper bound, since some of them may go as zero pages).</li>
 *   <li><b>Expected downtime</b>: {@code remaining / transfer rate + }{@link Tuning#deviceStateOverhead()} (default
 *       20 ms: sending device state and the switchover round trip; the agent passes what its own switchovers cost,
 *       {@link SwitchoverOverhead}). Exactly the overhead when nothing remains;
 *       unknown (empty) while pages remain and no transfer rate has been measured.</li>
 *   <li><b>Stall</b>: a round in which the dirty rate is at least the transfer rate. The dirty set then cannot
 *       shrink: each round lasts {@code remaining / transfer} and leaves {@code dirty * that} behind.</li>
 * </ul>
 *
 * <h2>Decision rules (by {@link #decide}, first match wins)</h2>
 * <ol>
 *   <li>A SwitchToPostcopy request is pending (HYBRID only): SWITCH_TO_POSTCOPY.</li>
 *   <li>Expected downtime known and at most max_downtime: STOP_AND_COPY, converged; unless one more round is
 *       expected to lower it by at least {@link Tuning#lowerDowntimeGain()} (default a fifth): then
 *       CONTINUE_PRECOPY. The next round sends what this one left and should leave behind the same share of it as
 *       this round left of what it sent ({@code pagesDirtied / (pagesSent + zeroPages)}); while the dirty set
 *       shrinks by that share the page part of the downtime shrinks with it, and once it stops shrinking (each
 *       round's fixed cost lets the guest dirty as much as the round sends) the fit is taken. Only while no
 *       non-convergence trigger below holds and another round stays under max_rounds. QEMU stops at the first
 *       fit, which sizes the downtime to the limit; a few short rounds more cost little time and bring it down
 *       towards the switchover's own cost.</li>
 *   <li>Not converging, when any of these holds:
 *     <ul>
 *       <li>precopy rounds recorded reached max_rounds (default 30);</li>
 *       <li>max_total_time is set and the time since create_time reached it;</li>
 *       <li>the last {@link Tuning#stallRounds()} (default {@value Tuning#DEFAULT_STALL_ROUNDS}) rounds in a row
 *           were stalls. This third trigger goes beyond the two the API names: when the guest dirties memory at
 *           least as fast as it can be sent, more rounds only repeat the same amount of work, so waiting for
 *           max_rounds wastes bandwidth and time. Three rounds tolerate a one-off burst. Set 0 to disable.</li>
 *     </ul>
 *     Then, per on_no_convergence: FAIL gives FAIL; SWITCH_TO_POSTCOPY (HYBRID only, checked by
 *     {@link ConvergencePolicy}) gives SWITCH_TO_POSTCOPY; CONTINUE gives STOP_AND_COPY not converged ("pause and
 *     copy the rest anyway, accepting a downtime longer than max_downtime", as the API defines CONTINUE: the
 *     migration does not run precopy forever).</li>
 *   <li>Otherwise CONTINUE_PRECOPY.</li>
 * </ol>
 *
 * <h2>Auto-converge (when the policy enables it)</h2>
 * A round in which the guest dirtied more than half of the bytes the round sent is a "hot" round (QEMU's
 * rule). After two hot rounds in a row the throttle rises: to the initial percentage, then by the increment, up to
 * the maximum ({@link Estimates#throttlePercent()}; the caller applies it to the vCPUs). While it can still rise,
 * stalled rounds do not count as not converging: throttling is still working on them.
 *
 * <p>Not thread-safe: owned by one {@link SourceStateMachine}, whose caller serializes events.
 */
public final class PrecopyPlanner {

    /**
     * Planner constants that are not part of the API's policy.
     *
     * @param deviceStateOverhead  added to every downtime estimate for device state and the switchover round trip
     * @param stallRounds          consecutive stalled rounds that count as not converging; 0 disables the trigger
     * @param rateSmoothing        EWMA weight of the newest sample, in (0, 1]; 1 means the last round alone
     * @param minRateSampleBytes   smallest round (page bytes) that updates an already known transfer rate
     * @param lowerDowntimeGain    share by which one more round must be expected to lower a fitting downtime for
     *                             the planner to run it instead of stopping; 0 stops at the first fit
     */
    public record Tuning(Duration deviceStateOverhead, int stallRounds, double rateSmoothing, long minRateSampleBytes,
                         double lowerDowntimeGain) {
        public static final int DEFAULT_STALL_ROUNDS = 3;
        public static final Tuning DEFAULT = new Tuning(Duration.ofMillis(20), DEFAULT_STALL_ROUNDS, 1.0, 1L << 20, 0.2);

        public Tuning {
            Objects.requireNonNull(deviceStateOverhead, "deviceStateOverhead");
            if (deviceStateOverhead.isNegative()) {
                throw new IllegalArgumentException("negative device-state overhead");
            }
            if (stallRounds < 0) {
                throw new IllegalArgumentException("negative stallRounds");
            }
            if (!(rateSmoothing > 0 && rateSmoothing <= 1)) {
                throw new IllegalArgumentException("rateSmoothing must be in (0, 1], not " + rateSmoothing);
            }
            if (minRateSampleBytes < 0) {
                throw new IllegalArgumentException("negative minRateSampleBytes");
            }
            if (!(lowerDowntimeGain >= 0 && lowerDowntimeGain < 1)) {
                throw new IllegalArgumentException("lowerDowntimeGain must be in [0, 1), not " + lowerDowntimeGain);
            }
        }

        public Tuning withDeviceStateOverhead(Duration d) {
            return new Tuning(d, stallRounds, rateSmoothing, minRateSampleBytes, lowerDowntimeGain);
        }

        public Tuning withStallRounds(int n) {
            return new Tuning(deviceStateOverhead, n, rateSmoothing, minRateSampleBytes, lowerDowntimeGain);
        }

        public Tuning withRateSmoothing(double a) {
            return new Tuning(deviceStateOverhead, stallRounds, a, minRateSampleBytes, lowerDowntimeGain);
        }

        public Tuning withLowerDowntimeGain(double g) {
            return new Tuning(deviceStateOverhead, stallRounds, rateSmoothing, minRateSampleBytes, g);
        }
    }

    /**
     * The planner's view after the last recorded round.
     *
     * @param dirtyRateBytesPerSecond     smoothed dirty rate (0 before the first round)
     * @param transferRateBytesPerSecond  smoothed transfer rate, capped by the bandwidth limit (0 while unknown)
     * @param bytesRemaining              page bytes dirtied during the last round
     * @param expectedDowntime            see the class comment; empty while unknown
     * @param stalledRounds               consecutive stalled rounds ending with the last one
     * @param throttlePercent             auto-converge's CPU throttle for the next round, 0 to 99
     */
    public record Estimates(long dirtyRateBytesPerSecond, long transferRateBytesPerSecond, long bytesRemaining,
                            Optional<Duration> expectedDowntime, int stalledRounds, int throttlePercent) {
        static final Estimates NONE = new Estimates(0, 0, 0, Optional.empty(), 0, 0);

        public Estimates(long dirtyRateBytesPerSecond, long transferRateBytesPerSecond, long bytesRemaining,
                Optional<Duration> expectedDowntime, int stalledRounds) {
            this(dirtyRateBytesPerSecond, transferRateBytesPerSecond, bytesRemaining, expectedDowntime, stalledRounds, 0);
        }
    }

    private final ConvergencePolicy policy;
    private final Tuning tuning;
    private long bandwidthLimit; // the policy's, until UpdateMigration changes it

    private int rounds;
    /** Smoothed, uncapped transfer rate in bytes per second; NaN while unknown. */
    private double transferRate = Double.NaN;
    /** Smoothed dirty rate in bytes per second; NaN while unknown. */
    private double dirtyRate = Double.NaN;
    private Estimates estimates = Estimates.NONE;
    private int hotRounds; // consecutive rounds that dirtied more than half of what they sent
    private int throttle; // percent
    private RoundStats firstRound;
    private RoundStats lastRound;
    private long writeSample; // bytes per second the guest wrote just before round 1 (mode AUTO), 0 if unknown
    private ModePredictor.Choice modeChoice; // mode AUTO, once made after round 1

    public PrecopyPlanner(ConvergencePolicy policy) {
        this(policy, Tuning.DEFAULT);
    }

    public PrecopyPlanner(ConvergencePolicy policy, Tuning tuning) {
        this.policy = Objects.requireNonNull(policy, "policy");
        this.tuning = Objects.requireNonNull(tuning, "tuning");
        this.bandwidthLimit = policy.bandwidthLimitBytesPerSecond();
    }

    public ConvergencePolicy policy() {
        return policy;
    }

    public Tuning tuning() {
        return tuning;
    }

    /** Precopy rounds recorded so far. */
    public int rounds() {
        return rounds;
    }

    /** The estimates after the last recorded round. */
    public Estimates estimates() {
        return estimates;
    }

    /** Feeds one finished precopy round (not the stop-and-copy round) and returns the updated estimates. */
    public Estimates recordRound(RoundStats round) {
        Objects.requireNonNull(round, "round");
        rounds++;
        if (firstRound == null) {
            firstRound = round;
        }
        lastRound = round;
        double seconds = round.elapsed().toNanos() / 1e9;
        double a = tuning.rateSmoothing();
        if (seconds > 0) {
            double bytes = round.bytesSent();
            boolean sample = bytes > 0 && (Double.isNaN(transferRate) || bytes >= tuning.minRateSampleBytes());
            if (sample) {
                transferRate = smooth(transferRate, bytes / seconds, a);
            }
            dirtyRate = smooth(dirtyRate, round.dirtyBytes() / seconds, a);
        }
        long transfer = effectiveTransferRate();
        long dirty = Double.isNaN(dirtyRate) ? 0 : clampToLong(dirtyRate);
        long remaining = round.dirtyBytes();
        boolean stalled = transfer > 0 && dirty >= transfer && remaining > 0;
        int stalledRounds = stalled ? estimates.stalledRounds() + 1 : 0;
        throttleAfter(round);
        estimates = new Estimates(dirty, transfer, remaining, downtime(remaining, transfer), stalledRounds, throttle);
        return estimates;
    }

    /**
     * Decides what follows the last recorded round (see the class comment for the rules).
     *
     * @param sinceCreate              time since the migration's create_time, for max_total_time
     * @param postcopySwitchRequested  whether SwitchToPostcopy was called (only possible for HYBRID)
     * @throws IllegalStateException no round was recorded yet
     */
    public Decision decide(Duration sinceCreate, boolean postcopySwitchRequested) {
        Objects.requireNonNull(sinceCreate, "sinceCreate");
        if (rounds == 0) {
            throw new IllegalStateException("no precopy round recorded yet");
        }
        Optional<Duration> expected = estimates.expectedDowntime();
        if (policy.autoMode() && modeChoice == null && !postcopySwitchRequested) {
            modeChoice = ModePredictor.choose(new ModePredictor.FirstRound(sinceCreate, firstRound.elapsed(),
                    firstRound.bytesSent(), firstRound.dirtyBytes(), estimates.transferRateBytesPerSecond(),
                    estimates.dirtyRateBytesPerSecond(), writeSample), policy, tuning.deviceStateOverhead());
            if (modeChoice.mode() == dev.ferry.v1.MigrationMode.POSTCOPY) {
                return new Decision(Action.SWITCH_TO_POSTCOPY, "mode AUTO: " + modeChoice.reason(), false, expected);
            }
            if (modeChoice.autoConverge() && !policy.autoConverge().enabled()) {
                hotRounds = firstRound.dirtyBytes() * 2 > firstRound.bytesSent() ? 1 : 0; // round 1 counts, as predicted
            }
        }
        if (postcopySwitchRequested) {
            if (!policy.allowsPostcopySwitch()) {
                throw new IllegalStateException("switch to postcopy requested in mode " + policy.mode());
            }
            return new Decision(Action.SWITCH_TO_POSTCOPY,
                    "switching to postcopy after round " + rounds + " as requested by SwitchToPostcopy", false,
                    expected);
        }
        if (expected.isPresent() && expected.get().compareTo(policy.maxDowntime()) <= 0) {
            Optional<Duration> lower = afterAnotherRound(expected.get(), sinceCreate);
            if (lower.isPresent()) {
                return new Decision(Action.CONTINUE_PRECOPY, "round " + rounds + ": expected downtime "
                        + ProtoTime.format(expected.get()) + " <= max_downtime " + ProtoTime.format(policy.maxDowntime())
                        + ", one more round should bring it to " + ProtoTime.format(lower.get()), false, expected);
            }
            return new Decision(Action.STOP_AND_COPY, "precopy converged after round " + rounds + ": expected downtime "
                    + ProtoTime.format(expected.get()) + " <= max_downtime " + ProtoTime.format(policy.maxDowntime()),
                    true, expected);
        }
        String why = nonConvergence(sinceCreate);
        if (why == null) {
            return new Decision(Action.CONTINUE_PRECOPY, "round " + rounds + ": expected downtime "
                    + describe(expected) + " > max_downtime " + ProtoTime.format(policy.maxDowntime()), false, expected);
        }
        String base = "precopy did not converge: " + why + "; expected downtime " + describe(expected)
                + " > max_downtime " + ProtoTime.format(policy.maxDowntime()) + " (dirty rate "
                + ProtoTime.formatRate(estimates.dirtyRateBytesPerSecond()) + ", transfer rate "
                + ProtoTime.formatRate(estimates.transferRateBytesPerSecond()) + ")";
        NoConvergenceAction action = policy.onNoConvergence();
        return switch (action) {
            case FAIL -> new Decision(Action.FAIL, base + "; on_no_convergence is FAIL", false, expected);
            case SWITCH_TO_POSTCOPY -> new Decision(Action.SWITCH_TO_POSTCOPY,
                    base + "; on_no_convergence is SWITCH_TO_POSTCOPY", false, expected);
            case CONTINUE -> new Decision(Action.STOP_AND_COPY,
                    base + "; on_no_convergence is CONTINUE: pausing anyway, downtime will exceed max_downtime",
                    false, expected);
            default -> throw new IllegalStateException("unresolved on_no_convergence " + action);
        };
    }

    /**
     * The downtime expected after one more round, if it is lower than {@code expected} by at least the tuning's
     * gain and another round is allowed (see the class comment); else empty.
     */
    private Optional<Duration> afterAnotherRound(Duration expected, Duration sinceCreate) {
        long handled = lastRound.pagesSent() + lastRound.zeroPages();
        if (tuning.lowerDowntimeGain() <= 0 || handled == 0 || rounds + 1 >= policy.maxRounds()
                || estimates.stalledRounds() > 0 || nonConvergence(sinceCreate) != null) {
            return Optional.empty();
        }
        double shrink = (double) lastRound.pagesDirtied() / handled;
        long overhead = tuning.deviceStateOverhead().toNanos();
        long pages = Math.max(0, expected.toNanos() - overhead);
        Duration next = Duration.ofNanos(overhead + (long) Math.ceil(shrink * pages));
        return next.toNanos() <= (1 - tuning.lowerDowntimeGain()) * expected.toNanos() ? Optional.of(next)
                : Optional.empty();
    }

    /** Why precopy counts as not converging now, or null. */
    private String nonConvergence(Duration sinceCreate) {
        if (rounds >= policy.maxRounds()) {
            return "max_rounds " + policy.maxRounds() + " reached";
        }
        if (policy.hasTotalTimeLimit() && sinceCreate.compareTo(policy.maxTotalTime()) >= 0) {
            return "max_total_time " + ProtoTime.format(policy.maxTotalTime()) + " reached ("
                    + ProtoTime.format(sinceCreate) + " since create)";
        }
        if (tuning.stallRounds() > 0 && estimates.stalledRounds() >= tuning.stallRounds() && !throttleCanRise()) {
            return "the guest dirtied memory at least as fast as it was sent for " + estimates.stalledRounds()
                    + " rounds in a row";
        }
        return null;
    }

    /**
     * Mode AUTO: the guest's write rate, from a dirty-log sample short enough that few pages were written twice
     * (round 1's own count underestimates it when the guest rewrites pages during a long round).
     */
    public void writeRateSampled(long bytesPerSecond) {
        writeSample = bytesPerSecond;
    }

    /** Mode AUTO's pick after round 1, if made. */
    public Optional<ModePredictor.Choice> modeChoice() {
        return Optional.ofNullable(modeChoice);
    }

    /** The policy's auto-converge, or its defaults once mode AUTO picked throttled precopy. */
    private ConvergencePolicy.AutoConverge autoConverge() {
        if (!policy.autoConverge().enabled() && modeChoice != null && modeChoice.autoConverge()) {
            return ConvergencePolicy.AutoConverge.DEFAULTS;
        }
        return policy.autoConverge();
    }

    private void throttleAfter(RoundStats round) {
        ConvergencePolicy.AutoConverge ac = autoConverge();
        if (!ac.enabled()) {
            return;
        }
        boolean hot = round.dirtyBytes() * 2 > round.bytesSent();
        hotRounds = hot ? hotRounds + 1 : 0;
        if (hotRounds >= 2) {
            hotRounds = 0;
            throttle = throttle == 0 ? ac.initialPercent() : Math.min(ac.maxPercent(), throttle + ac.incrementPercent());
        }
    }

    /** Whether auto-converge could still slow the guest down further. */
    private boolean throttleCanRise() {
        return autoConverge().enabled() && throttle < autoConverge().maxPercent();
    }

    /** UpdateMigration changed the cap: estimates from now on use it (0: none). */
    public void bandwidthLimit(long bytesPerSecond) {
        bandwidthLimit = bytesPerSecond;
    }

    private long effectiveTransferRate() {
        if (Double.isNaN(transferRate)) {
            return 0;
        }
        long rate = Math.max(1, clampToLong(transferRate));
        long limit = bandwidthLimit;
        return limit > 0 ? Math.min(rate, limit) : rate;
    }

    private Optional<Duration> downtime(long remaining, long transferRate) {
        if (remaining == 0) {
            return Optional.of(tuning.deviceStateOverhead());
        }
        if (transferRate <= 0) {
            return Optional.empty();
        }
        double nanos = remaining * 1e9 / transferRate;
        long n = nanos >= Long.MAX_VALUE / 2.0 ? Long.MAX_VALUE / 2 : (long) Math.ceil(nanos);
        return Optional.of(Duration.ofNanos(n).plus(tuning.deviceStateOverhead()));
    }

    private static double smooth(double old, double sample, double a) {
        return Double.isNaN(old) ? sample : a * sample + (1 - a) * old;
    }

    private static long clampToLong(double v) {
        return v >= Long.MAX_VALUE ? Long.MAX_VALUE : Math.round(v);
    }

    private static String describe(Optional<Duration> d) {
        return d.map(ProtoTime::format).orElse("unknown (no transfer rate measured yet)");
    }
}
