package dev.ferry.control.migration;

import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.MigrationPolicy.NoConvergenceAction;
import java.time.Duration;
import java.util.Objects;

/**
 * A {@link MigrationPolicy} with every default filled in and every field checked, together with the migration
 * mode it applies to (the defaults and the validity of {@code on_no_convergence} depend on the mode).
 *
 * <p>Build it with {@link #of(MigrationMode, MigrationPolicy)}; an {@link IllegalArgumentException} from there is
 * a bad policy, which CreateMigration answers with {@code INVALID_ARGUMENT}. {@link #toProto()} gives the policy
 * "with every default filled in" that {@code Migration.policy} reports.
 *
 * @param mode                          PRECOPY, POSTCOPY or HYBRID (never UNSPECIFIED: that resolves to PRECOPY)
 * @param maxDowntime                   longest acceptable downtime; precopy converges once the expected downtime is
 *                                      at most this. Default {@value #DEFAULT_MAX_DOWNTIME_MILLIS} ms
 * @param bandwidthLimitBytesPerSecond  cap on the data-plane send rate, 0 for unlimited
 * @param maxRounds                     precopy rounds (not counting stop-and-copy) before precopy counts as not
 *                                      converging. Default {@value #DEFAULT_MAX_ROUNDS}
 * @param maxTotalTime                  time from create_time after which precopy counts as not converging, checked
 *                                      at the end of each round; {@link Duration#ZERO} for no limit (the default)
 * @param dataStreams                   data-plane streams, 1 to {@value #MAX_DATA_STREAMS}. Default
 *                                      {@value #DEFAULT_DATA_STREAMS}
 * @param onNoConvergence               CONTINUE, FAIL or SWITCH_TO_POSTCOPY (only for HYBRID); never UNSPECIFIED:
 *                                      that resolves to SWITCH_TO_POSTCOPY for HYBRID and FAIL otherwise
 * @param verifyMemory                  whether to verify a memory digest; default true
 * @param autoConverge                  CPU throttling of a guest that outpaces precopy; default off
 * @param autoMode                      the caller asked for mode AUTO: {@code mode} is HYBRID, and the planner picks
 *                                      after round 1 ({@link ModePredictor})
 * @param pageCompression               AUTO, NONE or LZ4 (never UNSPECIFIED: that resolves to AUTO)
 */
public record ConvergencePolicy(
        MigrationMode mode,
        Duration maxDowntime,
        long bandwidthLimitBytesPerSecond,
        int maxRounds,
        Duration maxTotalTime,
        int dataStreams,
        NoConvergenceAction onNoConvergence,
        boolean verifyMemory,
        AutoConverge autoConverge,
        boolean autoMode,
        MigrationPolicy.PageCompression pageCompression) {

    /**
     * Auto-converge with its defaults filled in (see the proto's AutoConverge).
     *
     * @param enabled          whether precopy may throttle the guest at all
     * @param initialPercent   first throttle, 1 to 99
     * @param incrementPercent step between throttles, 1 to 99
     * @param maxPercent       highest throttle, initialPercent to 99
     */
    public record AutoConverge(boolean enabled, int initialPercent, int incrementPercent, int maxPercent) {
        public static final AutoConverge OFF = new AutoConverge(false, 20, 10, 99);
        /** On, with the defaults (QEMU's cpu-throttle-initial, -increment and max). */
        public static final AutoConverge DEFAULTS = new AutoConverge(true, 20, 10, 99);

        public AutoConverge {
            check("initial_percent", initialPercent);
            check("increment_percent", incrementPercent);
            check("max_percent", maxPercent);
            if (maxPercent < initialPercent) {
                throw new IllegalArgumentException("auto_converge.max_percent " + maxPercent
                        + " is below initial_percent " + initialPercent);
            }
        }

        private static void check(String field, int percent) {
            if (percent < 1 || percent > 99) {
                throw new IllegalArgumentException("auto_converge." + field + " must be 1 to 99, not "
                        + Integer.toUnsignedString(percent));
            }
        }

        static AutoConverge of(dev.ferry.v1.AutoConverge p) {
            if (!p.getEnabled()) {
                if (!p.equals(dev.ferry.v1.AutoConverge.getDefaultInstance())) {
                    // Percentages without enabled would be silently ignored: say so instead.
                    throw new IllegalArgumentException("auto_converge sets percentages but not enabled");
                }
                return OFF;
            }
            return new AutoConverge(true, orDefault(p.getInitialPercent(), DEFAULTS.initialPercent),
                    orDefault(p.getIncrementPercent(), DEFAULTS.incrementPercent),
                    orDefault(p.getMaxPercent(), DEFAULTS.maxPercent));
        }

        private static int orDefault(int v, int dflt) {
            return v == 0 ? dflt : v;
        }

        dev.ferry.v1.AutoConverge toProto() {
            return enabled ? dev.ferry.v1.AutoConverge.newBuilder().setEnabled(true).setInitialPercent(initialPercent)
                    .setIncrementPercent(incrementPercent).setMaxPercent(maxPercent).build()
                    : dev.ferry.v1.AutoConverge.getDefaultInstance();
        }
    }

    public static final long DEFAULT_MAX_DOWNTIME_MILLIS = 300;
    public static final Duration DEFAULT_MAX_DOWNTIME = Duration.ofMillis(DEFAULT_MAX_DOWNTIME_MILLIS);
    public static final int DEFAULT_MAX_ROUNDS = 30;
    public static final int DEFAULT_DATA_STREAMS = 4;
    public static final int MAX_DATA_STREAMS = 64;

    public ConvergencePolicy {
        Objects.requireNonNull(mode, "mode");
        Objects.requireNonNull(maxDowntime, "maxDowntime");
        Objects.requireNonNull(maxTotalTime, "maxTotalTime");
        Objects.requireNonNull(onNoConvergence, "onNoConvergence");
        Objects.requireNonNull(autoConverge, "autoConverge");
        Objects.requireNonNull(pageCompression, "pageCompression");
        switch (pageCompression) {
            case AUTO, NONE, LZ4 -> { }
            default -> throw new IllegalArgumentException("page_compression must be AUTO, NONE or LZ4, not "
                    + pageCompression);
        }
        if (autoConverge.enabled() && mode == MigrationMode.POSTCOPY) {
            throw new IllegalArgumentException("auto_converge throttles precopy; mode POSTCOPY has none");
        }
        if (mode == MigrationMode.MIGRATION_MODE_UNSPECIFIED || mode == MigrationMode.UNRECOGNIZED
                || mode == MigrationMode.AUTO) {
            throw new IllegalArgumentException("mode must be PRECOPY, POSTCOPY or HYBRID, not " + mode);
        }
        if (autoMode && mode != MigrationMode.HYBRID) {
            throw new IllegalArgumentException("mode AUTO runs as HYBRID, not " + mode);
        }
        if (maxDowntime.isNegative() || maxDowntime.isZero()) {
            throw new IllegalArgumentException("max_downtime must be positive, not " + maxDowntime);
        }
        if (bandwidthLimitBytesPerSecond < 0) {
            throw new IllegalArgumentException("bandwidth_limit_bytes_per_second is too large (above 2^63 - 1)");
        }
        if (maxRounds < 1) {
            throw new IllegalArgumentException("max_rounds must be at least 1, not " + Integer.toUnsignedString(maxRounds));
        }
        if (maxTotalTime.isNegative()) {
            throw new IllegalArgumentException("max_total_time must not be negative, not " + maxTotalTime);
        }
        if (dataStreams < 1 || dataStreams > MAX_DATA_STREAMS) {
            throw new IllegalArgumentException("data_streams must be 1 to " + MAX_DATA_STREAMS + ", not "
                    + Integer.toUnsignedString(dataStreams));
        }
        switch (onNoConvergence) {
            case CONTINUE, FAIL -> { }
            case SWITCH_TO_POSTCOPY -> {
                if (mode != MigrationMode.HYBRID) {
                    throw new IllegalArgumentException("on_no_convergence SWITCH_TO_POSTCOPY is only valid for mode"
                            + " HYBRID, not " + mode + " (use FAIL or CONTINUE)");
                }
            }
            default -> throw new IllegalArgumentException("on_no_convergence must be CONTINUE, FAIL or"
                    + " SWITCH_TO_POSTCOPY, not " + onNoConvergence);
        }
    }

    /** The default policy for a mode (what an empty {@link MigrationPolicy} resolves to). */
    public static ConvergencePolicy defaults(MigrationMode mode) {
        return of(mode, MigrationPolicy.getDefaultInstance());
    }

    /**
     * Resolves a policy as sent in CreateMigration: zero or unset fields take their documented defaults, and
     * everything else is checked.
     *
     * @param mode   the migration's mode; UNSPECIFIED means PRECOPY
     * @param policy the caller's policy; {@code null} or empty means all defaults
     * @throws IllegalArgumentException a field is out of range or does not fit the mode ({@code INVALID_ARGUMENT})
     */
    public static ConvergencePolicy of(MigrationMode mode, MigrationPolicy policy) {
        Objects.requireNonNull(mode, "mode");
        MigrationPolicy p = policy == null ? MigrationPolicy.getDefaultInstance() : policy;
        MigrationMode m = mode == MigrationMode.MIGRATION_MODE_UNSPECIFIED ? MigrationMode.PRECOPY : mode;
        boolean auto = m == MigrationMode.AUTO;
        if (auto) {
            m = MigrationMode.HYBRID; // it may switch to postcopy: the destination must be ready for it
        }

        Duration maxDowntime = p.hasMaxDowntime()
                ? ProtoTime.fromProto(p.getMaxDowntime(), "max_downtime") : Duration.ZERO;
        if (maxDowntime.isNegative()) {
            throw new IllegalArgumentException("max_downtime must not be negative, not " + maxDowntime);
        }
        if (maxDowntime.isZero()) {
            maxDowntime = DEFAULT_MAX_DOWNTIME;
        }
        Duration maxTotalTime = p.hasMaxTotalTime()
                ? ProtoTime.fromProto(p.getMaxTotalTime(), "max_total_time") : Duration.ZERO;
        // uint32: values above 2^31 - 1 arrive negative; they mean "practically unlimited".
        int maxRounds = p.getMaxRounds() == 0 ? DEFAULT_MAX_ROUNDS
                : p.getMaxRounds() < 0 ? Integer.MAX_VALUE : p.getMaxRounds();
        int dataStreams = p.getDataStreams() == 0 ? DEFAULT_DATA_STREAMS : p.getDataStreams();
        NoConvergenceAction action = p.getOnNoConvergence();
        if (action == NoConvergenceAction.NO_CONVERGENCE_ACTION_UNSPECIFIED) {
            action = m == MigrationMode.HYBRID ? NoConvergenceAction.SWITCH_TO_POSTCOPY : NoConvergenceAction.FAIL;
        }
        boolean verify = !p.hasVerifyMemory() || p.getVerifyMemory();
        MigrationPolicy.PageCompression compression =
                p.getPageCompression() == MigrationPolicy.PageCompression.PAGE_COMPRESSION_UNSPECIFIED
                        ? MigrationPolicy.PageCompression.AUTO : p.getPageCompression();
        return new ConvergencePolicy(m, maxDowntime, p.getBandwidthLimitBytesPerSecond(), maxRounds, maxTotalTime,
                dataStreams, action, verify, AutoConverge.of(p.getAutoConverge()), auto, compression);
    }

    /** The mode as the caller asked for it (AUTO for mode AUTO). */
    public MigrationMode requestedMode() {
        return autoMode ? MigrationMode.AUTO : mode;
    }

    /** Whether a total-time limit is set. */
    public boolean hasTotalTimeLimit() {
        return !maxTotalTime.isZero();
    }

    /** Whether precopy may hand over to postcopy (manual SwitchToPostcopy or on non-convergence): HYBRID only. */
    public boolean allowsPostcopySwitch() {
        return mode == MigrationMode.HYBRID;
    }

    /** Whether the migration starts in precopy (PRECOPY and HYBRID) rather than pausing at once (POSTCOPY). */
    public boolean startsWithPrecopy() {
        return mode != MigrationMode.POSTCOPY;
    }

    /**
     * The policy with every default filled in, for {@code Migration.policy}. max_total_time stays unset when there
     * is no limit (the API has no other way to say "no limit").
     */
    public MigrationPolicy toProto() {
        MigrationPolicy.Builder b = MigrationPolicy.newBuilder()
                .setMaxDowntime(ProtoTime.toProto(maxDowntime))
                .setBandwidthLimitBytesPerSecond(bandwidthLimitBytesPerSecond)
                .setMaxRounds(maxRounds)
                .setDataStreams(dataStreams)
                .setOnNoConvergence(onNoConvergence)
                .setVerifyMemory(verifyMemory)
                .setPageCompression(pageCompression);
        if (hasTotalTimeLimit()) {
            b.setMaxTotalTime(ProtoTime.toProto(maxTotalTime));
        }
        if (autoConverge.enabled()) {
            b.setAutoConverge(autoConverge.toProto());
        }
        return b.build();
    }
}
