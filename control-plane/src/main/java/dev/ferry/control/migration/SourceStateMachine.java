package dev.ferry.control.migration;

import static dev.ferry.v1.Migration.Phase.CANCELLED;
import static dev.ferry.v1.Migration.Phase.COMPLETED;
import static dev.ferry.v1.Migration.Phase.DEVICE_STATE;
import static dev.ferry.v1.Migration.Phase.FAILED;
import static dev.ferry.v1.Migration.Phase.NEGOTIATING;
import static dev.ferry.v1.Migration.Phase.POSTCOPY;
import static dev.ferry.v1.Migration.Phase.POSTCOPY_PAUSED;
import static dev.ferry.v1.Migration.Phase.PRECOPY;
import static dev.ferry.v1.Migration.Phase.QUEUED;
import static dev.ferry.v1.Migration.Phase.RESUMING_ON_DESTINATION;
import static dev.ferry.v1.Migration.Phase.STOP_AND_COPY;
import static dev.ferry.v1.Migration.Phase.VERIFYING;

import dev.ferry.control.migration.Decision.Action;
import dev.ferry.v1.CompleteIncomingMigrationResponse;
import dev.ferry.v1.CompleteIncomingPostcopyResponse;
import dev.ferry.v1.MemoryDigest;
import dev.ferry.v1.MemoryRegion;
import dev.ferry.v1.Migration;
import dev.ferry.v1.Migration.Phase;
import dev.ferry.v1.MigrationConfig;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationProgress;
import dev.ferry.v1.MigrationStatistics;
import dev.ferry.v1.PostcopyStatistics;
import com.google.protobuf.Any;
import com.google.rpc.ErrorInfo;
import io.grpc.Status;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;

/**
 * The outgoing side of one migration as an explicit state machine over {@link Migration.Phase}: the I/O edge
 * (gRPC calls, page streams, vCPU pause) reports what happened as events, and the machine refuses every event
 * that is not valid in its phase with an {@link IllegalTransitionException}, leaving its state unchanged.
 *
 * <h2>Transitions</h2>
 * <pre>
 * NEGOTIATING  --queued--> QUEUED                           (no free outgoing slot, or the destination is at its
 *                                                           incoming limit; nothing sent yet)
 * QUEUED       --dequeued--> NEGOTIATING                     (a slot is free: negotiate, again if it was refused)
 * NEGOTIATING  --negotiated--> PRECOPY                       (mode PRECOPY, HYBRID)
 * NEGOTIATING  --negotiated--> DEVICE_STATE                  (mode POSTCOPY: vCPUs paused at once)
 * PRECOPY      --roundStarted, batchSent, roundFinished, decideAfterRound, requestSwitchToPostcopy--> PRECOPY
 * PRECOPY      --decideAfterRound = FAIL--> FAILED            (SOURCE_KEEPS_VM)
 * PRECOPY      --stopAndCopyStarted--> STOP_AND_COPY         (after decision STOP_AND_COPY; vCPUs paused)
 * PRECOPY      --deviceStateStarted--> DEVICE_STATE          (after SWITCH_TO_POSTCOPY or a switch request; paused)
 * STOP_AND_COPY --roundStarted, batchSent, roundFinished--> STOP_AND_COPY   (exactly one round)
 * STOP_AND_COPY --deviceStateStarted--> DEVICE_STATE         (after that round finished)
 * DEVICE_STATE --deviceStateSent--> RESUMING_ON_DESTINATION
 * RESUMING_ON_DESTINATION --destinationResumed--> VERIFYING  (precopy path; COMPLETED without verify_memory)
 * RESUMING_ON_DESTINATION --destinationResumed--> POSTCOPY   (postcopy path)
 * RESUMING_ON_DESTINATION --switchoverRefused--> FAILED      (SOURCE_KEEPS_VM)
 * POSTCOPY     --roundStarted, batchSent, roundFinished, postcopyFaultServed, postcopyPagesMissing--> POSTCOPY
 * POSTCOPY     --postcopyConnectionLost--> POSTCOPY_PAUSED
 * POSTCOPY_PAUSED --postcopyConnectionRestored--> POSTCOPY
 * POSTCOPY     --postcopyCompleted--> VERIFYING              (COMPLETED without verify_memory)
 * VERIFYING    --verificationCompared--> VERIFYING           (the verdict: COMMIT or ROLL_BACK)
 * VERIFYING    --committed--> COMPLETED                      (after verdict COMMIT)
 * VERIFYING    --rolledBack--> FAILED                        (after verdict ROLL_BACK; SOURCE_KEEPS_VM, DATA_LOSS)
 * QUEUED | NEGOTIATING | PRECOPY | STOP_AND_COPY | DEVICE_STATE --cancelRequested--> CANCELLED (SOURCE_KEEPS_VM)
 * CANCELLED    --cancelRequested--> CANCELLED                (no-op, as CancelMigration documents)
 * any non-terminal phase --failed--> FAILED                  (aftermath depends on the phase, see failed())
 * </pre>
 * Cancel is refused in RESUMING_ON_DESTINATION, POSTCOPY, POSTCOPY_PAUSED, VERIFYING, COMPLETED and FAILED, with the reason
 * in the exception. {@link #accepts}/{@link #refusal} answer "would this event be accepted now" without acting, so
 * the edge can check a precondition before doing I/O (e.g. ResumeMigration before ResumeIncomingMigration).
 *
 * <h2>Clock</h2>
 * Every timestamp (phase history, create/start/end time, pause, downtime) comes from the injected
 * {@link InstantSource}; rates come from {@link RoundStats#elapsed()} as the edge measured it.
 *
 * <p>Not thread-safe: the edge serializes all calls on one migration (one lock per migration), which also makes
 * the phase check and the transition of each event atomic.
 */
public final class SourceStateMachine {

    /** The events, as named in refusals. */
    public enum Event {
        QUEUED, DEQUEUED, NEGOTIATED, ROUND_STARTED, BATCH_SENT, ROUND_FINISHED, DECIDE_AFTER_ROUND, SWITCH_TO_POSTCOPY_REQUESTED,
        STOP_AND_COPY_STARTED, DEVICE_STATE_STARTED, DEVICE_STATE_SENT, DESTINATION_RESUMED, SWITCHOVER_REFUSED,
        POSTCOPY_FAULT_SERVED, POSTCOPY_PAGES_MISSING, POSTCOPY_CONNECTION_LOST, POSTCOPY_CONNECTION_RESTORED,
        POSTCOPY_COMPLETED, VERIFICATION_COMPARED, COMMITTED, ROLLED_BACK, CANCEL, FAIL
    }

    /** What the edge does after a verification: keep the destination's copy, or take the VM back. */
    public enum Verdict {
        /** Every compared page matched: CommitIncomingMigration, then {@link #committed()}. */
        COMMIT,
        /**
         * A page differs: the destination's copy is not the guest. AbortIncomingMigration (the destination
         * stops and deletes its guest), then {@link #rolledBack()} and resume the paused source.
         */
        ROLL_BACK
    }

    /** Phases in which each event may be valid; finer conditions are checked in {@link #refusal}. */
    private static final Map<Event, Set<Phase>> VALID_IN = new EnumMap<>(Event.class);

    /** Phases that end the migration. */
    public static final Set<Phase> TERMINAL = Collections.unmodifiableSet(EnumSet.of(COMPLETED, FAILED, CANCELLED));

    static {
        Set<Phase> running = EnumSet.of(QUEUED, NEGOTIATING, PRECOPY, STOP_AND_COPY, DEVICE_STATE, RESUMING_ON_DESTINATION,
                POSTCOPY, POSTCOPY_PAUSED, VERIFYING);
        VALID_IN.put(Event.QUEUED, EnumSet.of(NEGOTIATING));
        VALID_IN.put(Event.DEQUEUED, EnumSet.of(QUEUED));
        VALID_IN.put(Event.NEGOTIATED, EnumSet.of(NEGOTIATING));
        VALID_IN.put(Event.ROUND_STARTED, EnumSet.of(PRECOPY, STOP_AND_COPY, POSTCOPY));
        VALID_IN.put(Event.BATCH_SENT, EnumSet.of(PRECOPY, STOP_AND_COPY, POSTCOPY));
        VALID_IN.put(Event.ROUND_FINISHED, EnumSet.of(PRECOPY, STOP_AND_COPY, POSTCOPY));
        VALID_IN.put(Event.DECIDE_AFTER_ROUND, EnumSet.of(PRECOPY));
        VALID_IN.put(Event.SWITCH_TO_POSTCOPY_REQUESTED, EnumSet.of(PRECOPY));
        VALID_IN.put(Event.STOP_AND_COPY_STARTED, EnumSet.of(PRECOPY));
        VALID_IN.put(Event.DEVICE_STATE_STARTED, EnumSet.of(PRECOPY, STOP_AND_COPY));
        VALID_IN.put(Event.DEVICE_STATE_SENT, EnumSet.of(DEVICE_STATE));
        VALID_IN.put(Event.DESTINATION_RESUMED, EnumSet.of(RESUMING_ON_DESTINATION));
        VALID_IN.put(Event.SWITCHOVER_REFUSED, EnumSet.of(RESUMING_ON_DESTINATION));
        VALID_IN.put(Event.POSTCOPY_FAULT_SERVED, EnumSet.of(POSTCOPY, POSTCOPY_PAUSED));
        VALID_IN.put(Event.POSTCOPY_PAGES_MISSING, EnumSet.of(POSTCOPY, POSTCOPY_PAUSED));
        VALID_IN.put(Event.POSTCOPY_CONNECTION_LOST, EnumSet.of(POSTCOPY, POSTCOPY_PAUSED));
        VALID_IN.put(Event.POSTCOPY_CONNECTION_RESTORED, EnumSet.of(POSTCOPY_PAUSED));
        VALID_IN.put(Event.POSTCOPY_COMPLETED, EnumSet.of(POSTCOPY));
        VALID_IN.put(Event.VERIFICATION_COMPARED, EnumSet.of(VERIFYING));
        VALID_IN.put(Event.COMMITTED, EnumSet.of(VERIFYING));
        VALID_IN.put(Event.ROLLED_BACK, EnumSet.of(VERIFYING));
        VALID_IN.put(Event.CANCEL, EnumSet.of(QUEUED, NEGOTIATING, PRECOPY, STOP_AND_COPY, DEVICE_STATE, CANCELLED));
        VALID_IN.put(Event.FAIL, running);
    }

    /** Where the current round stands. */
    private enum RoundState { IDLE, RUNNING, AWAITING_DECISION }

    private final InstantSource clock;
    private final ConvergencePolicy policy;
    private final PrecopyPlanner planner;
    private final ProgressTracker progress;
    private final List<PhaseChange<Phase>> history = new ArrayList<>();
    private final Instant createTime;

    private Phase phase;
    private MigrationConfig config;
    private Instant startTime;
    private Instant pauseTime;
    private Instant resumeRequestTime; // device state sent: CompleteIncomingMigration goes out next
    private Instant resumeTime;
    private Instant endTime;

    private RoundState roundState = RoundState.IDLE;
    private Decision lastDecision;
    private boolean switchRequested;
    private boolean postcopyPath;
    private boolean finalRoundDone;
    private long passStartRemaining;

    private long deviceStateBytes;
    private boolean memoryVerified;
    private MemoryDigest sourceDigest;
    private MemoryDigest destinationDigest;
    private Duration guestPause;
    private PostcopyStatistics postcopyStatistics;
    private dev.ferry.v1.DowntimeBreakdown downtimeBreakdown;
    private long bandwidthLimit; // the policy's, until UpdateMigration changes it
    private int recoveries;
    private boolean verifyAfterResume = true; // false with a protocol-1 peer: no VerifyIncomingMigration round
    private boolean transferVerified; // the digest of the bytes received equals that of the bytes sent
    private MemoryVerification verification; // the last comparison, in VERIFYING
    private Verdict verdict;
    private boolean dataLoss; // FAILED because the destination's memory differs from the source's

    private String failureReason;
    private Status.Code failureCode; // the cause's gRPC code, kept for Migration.error
    private Phase failedIn; // the phase the migration was in when it failed: the failing step
    private Aftermath aftermath;

    /** A migration in phase NEGOTIATING, created now. */
    public SourceStateMachine(ConvergencePolicy policy, InstantSource clock) {
        this(policy, PrecopyPlanner.Tuning.DEFAULT, clock);
    }

    public SourceStateMachine(ConvergencePolicy policy, PrecopyPlanner.Tuning tuning, InstantSource clock) {
        this.policy = Objects.requireNonNull(policy, "policy");
        this.bandwidthLimit = policy.bandwidthLimitBytesPerSecond();
        this.clock = Objects.requireNonNull(clock, "clock");
        this.planner = new PrecopyPlanner(policy, tuning);
        this.progress = new ProgressTracker(clock);
        this.createTime = clock.instant();
        this.phase = NEGOTIATING;
        history.add(new PhaseChange<>(NEGOTIATING, createTime, "created"));
    }

    // ---------------------------------------------------------------------------------------------- queries

    public Phase phase() {
        return phase;
    }

    public boolean isTerminal() {
        return TERMINAL.contains(phase);
    }

    public ConvergencePolicy policy() {
        return policy;
    }

    public MigrationMode mode() {
        return policy.mode();
    }

    /** The accepted configuration, once negotiated. */
    public Optional<MigrationConfig> config() {
        return Optional.ofNullable(config);
    }

    /** Every phase entered, oldest first, starting with NEGOTIATING at create time. */
    public List<PhaseChange<Phase>> history() {
        return List.copyOf(history);
    }

    public Instant createTime() {
        return createTime;
    }

    public Optional<Instant> startTime() {
        return Optional.ofNullable(startTime);
    }

    public Optional<Instant> endTime() {
        return Optional.ofNullable(endTime);
    }

    /** The planner's last decision, if any. */
    public Optional<Decision> lastDecision() {
        return Optional.ofNullable(lastDecision);
    }

    /** Whether SwitchToPostcopy was requested; the edge may end the running round early when it sees this. */
    public boolean postcopySwitchRequested() {
        return switchRequested;
    }

    /**
     * Whether the migration ends by postcopy, that is CompleteIncomingMigration is sent with postcopy = true.
     * Known once DEVICE_STATE is entered.
     */
    public boolean postcopyPath() {
        return postcopyPath;
    }

    /** Whether the migration failed because the destination's memory differed from the source's (DATA_LOSS). */
    public boolean failedWithDataLoss() {
        return dataLoss;
    }

    /** The last verification's verdict, in VERIFYING once compared. */
    public Optional<Verdict> verdict() {
        return Optional.ofNullable(verdict);
    }

    /** Why the migration failed or was cancelled (FAILED and CANCELLED only). */
    public Optional<String> failureReason() {
        return Optional.ofNullable(failureReason);
    }

    /**
     * {@code Migration.error} after FAILED or CANCELLED: the cause's code, the reason, and a {@code google.rpc.ErrorInfo}
     * (domain {@value #ERROR_DOMAIN}) whose reason is the failing step ({@link #step}) and whose metadata says the
     * phase and whether retrying the migration may help ({@link #retryable}).
     */
    public Optional<com.google.rpc.Status> error() {
        if (failureReason == null) {
            return Optional.empty();
        }
        ErrorInfo info = ErrorInfo.newBuilder().setDomain(ERROR_DOMAIN).setReason(step(failedIn))
                .putMetadata("phase", failedIn.name())
                .putMetadata("retryable", Boolean.toString(retryable(failureCode))).build();
        return Optional.of(com.google.rpc.Status.newBuilder().setCode(failureCode.value()).setMessage(failureReason)
                .addDetails(Any.pack(info)).build());
    }

    /** The {@code ErrorInfo.domain} of a migration's error. */
    public static final String ERROR_DOMAIN = dev.ferry.v1.MigrationErrors.DOMAIN;

    /** The step a phase stands for in {@code ErrorInfo.reason}: NEGOTIATE, PRECOPY_ROUND, ..., POSTCOPY. */
    static String step(Phase p) {
        return switch (p) {
            case NEGOTIATING -> "NEGOTIATE";
            case PRECOPY -> "PRECOPY_ROUND";
            case STOP_AND_COPY -> "STOP_AND_COPY";
            case DEVICE_STATE -> "DEVICE_STATE";
            case RESUMING_ON_DESTINATION -> "SWITCHOVER";
            case VERIFYING -> "VERIFY";
            case POSTCOPY, POSTCOPY_PAUSED -> "POSTCOPY";
            default -> p.name();
        };
    }

    /** Whether creating the migration again may succeed unchanged: {@link dev.ferry.v1.MigrationErrors#retryable}. */
    public static boolean retryable(Status.Code code) {
        return dev.ferry.v1.MigrationErrors.retryable(code);
    }

    /** What the edge must do with the VM after FAILED or CANCELLED. */
    public Optional<Aftermath> aftermath() {
        return Optional.ofNullable(aftermath);
    }

    /** Mode AUTO: the guest's write rate, sampled just before round 1 (see {@link PrecopyPlanner#writeRateSampled}). */
    public void writeRateSampled(long bytesPerSecond) {
        planner.writeRateSampled(bytesPerSecond);
    }

    /** The planner's current estimates. */
    public PrecopyPlanner.Estimates estimates() {
        return planner.estimates();
    }

    /** Current round number (0 before the first). */
    public int round() {
        return progress.round();
    }

    /** Whether {@code event} would be accepted now. */
    public boolean accepts(Event event) {
        return refusal(event).isEmpty();
    }

    /** Why {@code event} would be refused now, or empty when it would be accepted. */
    public Optional<String> refusal(Event event) {
        return Optional.ofNullable(whyNot(event));
    }

    /** Throws the {@link IllegalTransitionException} that {@code event} would raise now, if any. */
    public void require(Event event) {
        String why = whyNot(event);
        if (why != null) {
            throw new IllegalTransitionException(phase, event, why);
        }
    }

    // ---------------------------------------------------------------------------------------------- events

    /**
     * The migration must wait before (or again before) negotiating: no outgoing slot is free, or the destination
     * refused it at its incoming limit. Nothing has been sent; the VM runs on the source.
     */
    public void queued(String why) {
        require(Event.QUEUED);
        enter(QUEUED, Objects.requireNonNull(why, "why"));
    }

    /** The migration got its slot (or waited out the destination's refusal): it negotiates now. */
    public void dequeued() {
        require(Event.DEQUEUED);
        enter(NEGOTIATING, "dequeued");
    }

    /**
     * NegotiateMigration succeeded. Mode PRECOPY and HYBRID enter PRECOPY; mode POSTCOPY pauses at once and enters
     * DEVICE_STATE (the edge pauses the vCPUs just before calling this).
     *
     * @param accepted the configuration the destination accepted
     * @throws IllegalArgumentException the accepted config does not fit the mode (wrong mode, or POSTCOPY feature
     *                                  missing for POSTCOPY/HYBRID); the phase stays NEGOTIATING
     */
    public void negotiated(MigrationConfig accepted) {
        require(Event.NEGOTIATED);
        Objects.requireNonNull(accepted, "accepted");
        MigrationMode acceptedMode = accepted.getMode() == MigrationMode.MIGRATION_MODE_UNSPECIFIED
                ? MigrationMode.PRECOPY : accepted.getMode();
        if (acceptedMode != policy.mode()) {
            throw new IllegalArgumentException("accepted mode " + acceptedMode + " differs from " + policy.mode());
        }
        if (policy.mode() != MigrationMode.PRECOPY
                && !accepted.getFeaturesList().contains(MigrationConfig.Feature.POSTCOPY)) {
            throw new IllegalArgumentException("mode " + policy.requestedMode() + " needs the POSTCOPY feature, which the"
                    + " accepted configuration lacks");
        }
        long memoryBytes = 0;
        for (MemoryRegion r : accepted.getMemoryRegionsList()) {
            memoryBytes = Math.addExact(memoryBytes, r.getSizeBytes());
        }
        config = accepted;
        startTime = clock.instant();
        progress.bytesRemaining(memoryBytes);
        progress.memoryBytes(memoryBytes);
        if (policy.startsWithPrecopy()) {
            enter(PRECOPY, "negotiated");
        } else {
            postcopyPath = true;
            pauseTime = startTime;
            enter(DEVICE_STATE, "mode POSTCOPY: vCPUs paused at once");
        }
    }

    /**
     * A round starts: a precopy round (first, or after decision CONTINUE_PRECOPY), the one stop-and-copy round, or
     * a postcopy background pass. Returns the round number for {@code PageBatch.round}.
     */
    public int roundStarted() {
        require(Event.ROUND_STARTED);
        roundState = RoundState.RUNNING;
        passStartRemaining = progress.bytesRemaining();
        return progress.roundStarted();
    }

    /** Pages a finished round sent LZ4-compressed and the bytes of their blocks, for the statistics. */
    public void pagesCompressed(long pages, long bytes) {
        progress.compressed(pages, bytes);
    }

    /** Live counts of pages sent in the running round (batches acknowledged), for progress snapshots. */
    public void batchSent(long dataPages, long zeroPages) {
        require(Event.BATCH_SENT);
        progress.pagesMoved(dataPages, zeroPages);
    }

    /**
     * The running round finished (every stream acknowledged its end_of_round). In PRECOPY the planner updates its
     * estimates and {@link #decideAfterRound()} must follow before anything else but cancel or fail.
     */
    public void roundFinished(RoundStats stats) {
        require(Event.ROUND_FINISHED);
        Objects.requireNonNull(stats, "stats");
        progress.roundFinished(stats);
        switch (phase) {
            case PRECOPY -> {
                progress.estimates(planner.recordRound(stats));
                roundState = RoundState.AWAITING_DECISION;
            }
            case STOP_AND_COPY -> {
                progress.bytesRemaining(0);
                finalRoundDone = true;
                roundState = RoundState.IDLE;
            }
            default -> {
                // POSTCOPY background pass: what it sent is no longer missing (postcopyPagesMissing corrects this
                // with the destination's own count after a recovery).
                long sent = Math.multiplyExact(stats.pagesSent() + stats.zeroPages(), RoundStats.PAGE_BYTES);
                progress.bytesRemaining(Math.max(0, passStartRemaining - sent));
                roundState = RoundState.IDLE;
            }
        }
    }

    /**
     * Asks the planner what follows the round that just finished (see {@link PrecopyPlanner} for the rules). The
     * edge then does what the decision says: {@link #roundStarted()}, {@link #stopAndCopyStarted()} or
     * {@link #deviceStateStarted()}. On FAIL the migration is already FAILED (aftermath SOURCE_KEEPS_VM) when
     * this returns, with the decision's reason.
     */
    public Decision decideAfterRound() {
        require(Event.DECIDE_AFTER_ROUND);
        Decision d = planner.decide(ProtoTime.between(createTime, clock.instant()), switchRequested);
        lastDecision = d;
        roundState = RoundState.IDLE;
        if (d.action() == Action.FAIL) {
            finish(FAILED, Status.Code.ABORTED, d.reason(), Aftermath.SOURCE_KEEPS_VM);
        }
        return d;
    }

    /**
     * SwitchToPostcopy: valid for mode HYBRID in phase PRECOPY. It takes effect at the next decision (the edge may
     * end the running round early, see {@link #postcopySwitchRequested()}), or at once between rounds through
     * {@link #deviceStateStarted()}. Returns false if it was already requested.
     */
    public boolean requestSwitchToPostcopy() {
        require(Event.SWITCH_TO_POSTCOPY_REQUESTED);
        boolean first = !switchRequested;
        switchRequested = true;
        return first;
    }

    /** The vCPUs are paused for the final round, after decision STOP_AND_COPY. Downtime starts now. */
    public void stopAndCopyStarted() {
        require(Event.STOP_AND_COPY_STARTED);
        pauseTime = clock.instant();
        enter(STOP_AND_COPY, lastDecision.reason());
    }

    /**
     * Device state is being sent: after the stop-and-copy round (precopy path), or in PRECOPY after decision
     * SWITCH_TO_POSTCOPY or a switch request (postcopy path; the vCPUs are paused now and downtime starts).
     */
    public void deviceStateStarted() {
        require(Event.DEVICE_STATE_STARTED);
        if (phase == PRECOPY) {
            if (lastDecision == null || lastDecision.action() != Action.SWITCH_TO_POSTCOPY) {
                lastDecision = new Decision(Action.SWITCH_TO_POSTCOPY,
                        "switching to postcopy between rounds as requested by SwitchToPostcopy", false,
                        planner.estimates().expectedDowntime());
            }
            postcopyPath = true;
            pauseTime = clock.instant();
            enter(DEVICE_STATE, lastDecision.reason());
        } else {
            enter(DEVICE_STATE, "stop-and-copy round done");
        }
    }

    /**
     * TransferDeviceState succeeded; the source now sends CompleteIncomingMigration (with postcopy =
     * {@link #postcopyPath()}).
     *
     * @param bytes size of the device-state envelope sent
     */
    public void deviceStateSent(long bytes) {
        require(Event.DEVICE_STATE_SENT);
        if (bytes < 0) {
            throw new IllegalArgumentException("negative device state size");
        }
        deviceStateBytes = bytes;
        resumeRequestTime = clock.instant();
        enter(RESUMING_ON_DESTINATION, "device state sent");
    }

    /**
     * CompleteIncomingMigration succeeded: the VM runs on the destination and downtime ends. Precopy path:
     * COMPLETED. Postcopy path: POSTCOPY.
     *
     * @param sentDigest the source_memory_digest sent in the request, or null if none
     * @param response   the destination's answer
     */
    public void destinationResumed(MemoryDigest sentDigest, CompleteIncomingMigrationResponse response) {
        require(Event.DESTINATION_RESUMED);
        Objects.requireNonNull(response, "response");
        resumeTime = resumedOnDestination(response, clock.instant());
        if (response.hasGuestPause()) {
            guestPause = ProtoTime.fromProto(response.getGuestPause(), "guest_pause");
        }
        if (postcopyPath) {
            progress.postcopyStarted();
            enter(POSTCOPY, "destination runs the VM; postcopy");
        } else {
            sourceDigest = sentDigest;
            destinationDigest = response.hasDestinationMemoryDigest() ? response.getDestinationMemoryDigest() : null;
            transferVerified = response.getMemoryVerified();
            progress.bytesRemaining(0);
            verifyOrFinish("destination runs the VM");
        }
    }

    /**
     * The peer speaks protocol version 1: no verification after the resume. The destination's digest comparison
     * before it resumed is the only check (statistics.verification_method DIGEST_BEFORE_RESUME).
     */
    public void noVerificationAfterResume() {
        verifyAfterResume = false;
    }

    /** Every page is on the destination and it runs the VM: verify (the source stays paused) or, if off, end. */
    private void verifyOrFinish(String note) {
        if (policy.verifyMemory() && !verifyAfterResume) {
            memoryVerified = transferVerified;
            finish(COMPLETED, note + " (peer speaks protocol 1: memory digest compared before the resume"
                    + (transferVerified ? "" : ", but the destination did not confirm it") + "; no verification after)",
                    null);
        } else if (policy.verifyMemory()) {
            enter(VERIFYING, note + "; comparing its memory with the paused source's");
        } else {
            finish(COMPLETED, note + " (memory not verified: verify_memory is false)", null);
        }
    }

    /**
     * When the destination ran the VM, on our clock: not before the request left (plus the destination's
     * resume_duration), not after the answer came (minus answered_after_resume); within those bounds, its
     * own resumed_time.
     */
    private Instant resumedOnDestination(CompleteIncomingMigrationResponse response, Instant answered) {
        Instant sent = resumeRequestTime != null ? resumeRequestTime : pauseTime;
        if (sent == null) {
            return answered;
        }
        Instant latest = answered;
        if (response.hasAnsweredAfterResume()) {
            latest = answered.minus(ProtoTime.fromProto(response.getAnsweredAfterResume(), "answered_after_resume"));
            latest = latest.isBefore(sent) ? sent : latest;
        }
        Instant earliest = sent;
        if (response.hasResumeDuration()) {
            earliest = sent.plus(ProtoTime.fromProto(response.getResumeDuration(), "resume_duration"));
            earliest = earliest.isAfter(latest) ? latest : earliest;
        }
        if (!response.hasResumedTime()) {
            return latest;
        }
        Instant reported = ProtoTime.fromProto(response.getResumedTime());
        return reported.isBefore(earliest) ? earliest : reported.isAfter(latest) ? latest : reported;
    }

    /**
     * CompleteIncomingMigration failed in a way that guarantees the destination did not run the VM (DATA_LOSS:
     * digest mismatch; INTERNAL: restore failed; FAILED_PRECONDITION). FAILED, SOURCE_KEEPS_VM. For an answer
     * that was lost (UNAVAILABLE, DEADLINE_EXCEEDED) retry the call instead, or call {@link #failed} (UNDECIDED).
     */
    public Aftermath switchoverRefused(String reason) {
        return switchoverRefused(Status.Code.FAILED_PRECONDITION, reason);
    }

    /** {@link #switchoverRefused(String)} with the code the destination answered, kept for {@code Migration.error}. */
    public Aftermath switchoverRefused(Status.Code code, String reason) {
        require(Event.SWITCHOVER_REFUSED);
        finish(FAILED, code, "the destination refused to run the VM: " + Objects.requireNonNull(reason, "reason"),
                Aftermath.SOURCE_KEEPS_VM);
        return aftermath;
    }

    /** A postcopy fault was answered (POSTCOPY; also POSTCOPY_PAUSED, for a reply written as the link broke). */
    public void postcopyFaultServed(long dataPages, long zeroPages) {
        require(Event.POSTCOPY_FAULT_SERVED);
        progress.faultServed(dataPages, zeroPages);
    }

    /** The destination still misses {@code pages} pages (from ResumeIncomingMigration or the push bookkeeping). */
    public void postcopyPagesMissing(long pages) {
        require(Event.POSTCOPY_PAGES_MISSING);
        progress.bytesRemaining(Math.multiplyExact(pages, RoundStats.PAGE_BYTES));
    }

    /**
     * The data plane or pager link was cut during postcopy: POSTCOPY_PAUSED; a running background pass is
     * abandoned (its pages so far stay counted). Already POSTCOPY_PAUSED: nothing changes and false is returned
     * (both links break together, and each reports it).
     */
    public boolean postcopyConnectionLost(String reason) {
        require(Event.POSTCOPY_CONNECTION_LOST);
        if (phase == POSTCOPY_PAUSED) {
            return false;
        }
        progress.roundAbandoned();
        roundState = RoundState.IDLE;
        enter(POSTCOPY_PAUSED, Objects.requireNonNull(reason, "reason"));
        return true;
    }

    /** ResumeIncomingMigration succeeded: back to POSTCOPY, one more recovery. */
    public void postcopyConnectionRestored() {
        require(Event.POSTCOPY_CONNECTION_RESTORED);
        recoveries++;
        enter(POSTCOPY, "recovered (" + recoveries + ")");
    }

    /**
     * CompleteIncomingPostcopy succeeded: every page is on the destination. VERIFYING, or COMPLETED when
     * verify_memory is off. The source still holds its paused copy either way until the edge releases it.
     *
     * @param sentDigest the source_memory_digest sent in the request, or null if none
     * @param response   the destination's answer (postcopy statistics, digest of the bytes placed)
     */
    public void postcopyCompleted(MemoryDigest sentDigest, CompleteIncomingPostcopyResponse response) {
        require(Event.POSTCOPY_COMPLETED);
        Objects.requireNonNull(response, "response");
        sourceDigest = sentDigest;
        destinationDigest = response.hasDestinationMemoryDigest() ? response.getDestinationMemoryDigest() : null;
        transferVerified = response.getMemoryVerified();
        if (response.hasGuestPause()) {
            guestPause = ProtoTime.fromProto(response.getGuestPause(), "guest_pause");
        }
        if (response.hasPostcopy()) {
            postcopyStatistics = response.getPostcopy();
        }
        progress.bytesRemaining(0);
        verifyOrFinish("every page is on the destination");
    }

    /**
     * The destination's memory was compared with the paused source's (VERIFYING). Returns the verdict: COMMIT
     * when every compared chunk matched and the digest of the bytes received equalled the bytes sent, else
     * ROLL_BACK. The phase stays VERIFYING until the edge reports {@link #committed()} or {@link #rolledBack()}.
     */
    public Verdict verificationCompared(MemoryVerification v) {
        require(Event.VERIFICATION_COMPARED);
        verification = Objects.requireNonNull(v, "verification");
        verdict = v.matched() && transferVerified ? Verdict.COMMIT : Verdict.ROLL_BACK;
        if (postcopyStatistics != null || postcopyPath) {
            PostcopyStatistics.Builder pc = postcopyStatistics != null ? postcopyStatistics.toBuilder()
                    : PostcopyStatistics.newBuilder();
            postcopyStatistics = pc.setPagesWrittenSinceResume(v.pagesWrittenAfterResume())
                    .setUnwrittenPagesVerified(v.matched()).build();
        }
        return verdict;
    }

    /** CommitIncomingMigration succeeded after verdict COMMIT: the VM is the destination's. COMPLETED. */
    public void committed() {
        require(Event.COMMITTED);
        memoryVerified = true;
        finish(COMPLETED, "destination runs the VM; its memory matches the source's at the pause on "
                + verification.pagesCompared() + " pages", null);
    }

    /**
     * After verdict ROLL_BACK the destination discarded its copy (AbortIncomingMigration succeeded): FAILED with
     * DATA_LOSS, and the source resumes its paused VM (SOURCE_KEEPS_VM). What the guest did on the destination
     * since it resumed there is lost; the source's copy is the guest as it was at the pause.
     */
    public Aftermath rolledBack() {
        require(Event.ROLLED_BACK);
        dataLoss = true;
        String what = verification.chunksDiffering() > 0
                ? verification.chunksDiffering() + " of " + verification.chunks() + " chunks of the destination's memory"
                        + " differ from the source's at the pause"
                : "the digest of the pages the destination received differs from the digest of the pages sent";
        finish(FAILED, Status.Code.DATA_LOSS, "memory verification failed: " + what + "; the destination's copy was discarded (with what"
                + " the guest did there since it resumed) and the VM runs on the source again", Aftermath.SOURCE_KEEPS_VM);
        return aftermath;
    }

    /**
     * CancelMigration. Before the destination may run the VM (NEGOTIATING, PRECOPY, STOP_AND_COPY, DEVICE_STATE):
     * CANCELLED, and the VM stays on the source (the edge aborts the destination and resumes the source vCPUs).
     * Already CANCELLED: changes nothing. Otherwise refused with the reason (the VM may already run on the
     * destination, or its memory is split between the hosts).
     */
    public Aftermath cancelRequested() {
        require(Event.CANCEL);
        if (phase != CANCELLED) {
            finish(CANCELLED, Status.Code.CANCELLED, "cancelled by CancelMigration", Aftermath.SOURCE_KEEPS_VM);
        }
        return aftermath;
    }

    /**
     * The migration failed; the reason is kept for {@code Migration.error}. Returns what becomes of the VM:
     * SOURCE_KEEPS_VM before RESUMING_ON_DESTINATION; UNDECIDED in RESUMING_ON_DESTINATION (the answer to
     * CompleteIncomingMigration was not learned) and in VERIFYING (the destination runs the VM and the source
     * holds the paused original, and the two did not agree which lives); DESTINATION_KEEPS_VM in POSTCOPY and
     * POSTCOPY_PAUSED.
     */
    public Aftermath failed(String reason) {
        return failed(Status.Code.INTERNAL, reason);
    }

    /**
     * {@link #failed(String)} with the gRPC code of the cause (UNAVAILABLE for a lost link, FAILED_PRECONDITION for
     * a refusing peer, INTERNAL for a bug, ...), kept with the failing step for {@code Migration.error}. After a
     * ROLL_BACK verdict the code is DATA_LOSS whatever the cause of this failure.
     */
    public Aftermath failed(Status.Code code, String reason) {
        require(Event.FAIL);
        Objects.requireNonNull(code, "code");
        Objects.requireNonNull(reason, "reason");
        if (verdict == Verdict.ROLL_BACK) {
            dataLoss = true; // the mismatch stands even if the rollback could not be completed
        }
        Aftermath a = switch (phase) {
            case RESUMING_ON_DESTINATION, VERIFYING -> Aftermath.UNDECIDED;
            case POSTCOPY, POSTCOPY_PAUSED -> Aftermath.DESTINATION_KEEPS_VM;
            default -> Aftermath.SOURCE_KEEPS_VM;
        };
        finish(FAILED, dataLoss ? Status.Code.DATA_LOSS : code, reason, a);
        return a;
    }

    // ---------------------------------------------------------------------------------------------- output

    /** A progress snapshot now (elapsed up to end_time once terminal). */
    public MigrationProgress progress() {
        return progress.snapshot(elapsed());
    }

    /** The data-plane cap now, in bytes per second (0: none). */
    public long bandwidthLimit() {
        return bandwidthLimit;
    }

    /** UpdateMigration: a new cap, while the migration runs (IllegalStateException once it ended). */
    public void bandwidthLimit(long bytesPerSecond) {
        if (isTerminal()) {
            throw new IllegalStateException("the migration has ended (" + phase + ")");
        }
        if (bytesPerSecond < 0) {
            throw new IllegalArgumentException("bandwidth limit must not be negative");
        }
        bandwidthLimit = bytesPerSecond;
        planner.bandwidthLimit(bytesPerSecond);
    }

    /** Where the downtime of the switchover that just succeeded went (MigrationStatistics.downtime_breakdown). */
    public void downtimeBreakdown(dev.ferry.v1.DowntimeBreakdown b) {
        downtimeBreakdown = Objects.requireNonNull(b, "breakdown");
    }

    /** The downtime of the switchover that succeeded: from the vCPU pause to the destination's resume. */
    public java.time.Duration downtime() {
        if (pauseTime == null || resumeTime == null) {
            throw new IllegalStateException("no switchover has succeeded");
        }
        return ProtoTime.between(pauseTime, resumeTime);
    }

    /**
     * Statistics as known now; complete once COMPLETED, partial on FAILED and CANCELLED. downtime runs from the
     * vCPU pause to the destination's successful answer (or to the end, if the source took the VM back).
     */
    public MigrationStatistics statistics() {
        MigrationStatistics.Builder b = progress.statistics(startTime)
                .setTotalTime(ProtoTime.toProto(elapsed()))
                .setDeviceStateBytes(deviceStateBytes)
                .setMemoryVerified(memoryVerified);
        if (pauseTime != null) {
            Instant until = resumeTime != null ? resumeTime : endTime != null ? endTime : clock.instant();
            b.setDowntime(ProtoTime.toProto(ProtoTime.between(pauseTime, until)));
        }
        if (guestPause != null) {
            b.setGuestPause(ProtoTime.toProto(guestPause));
        }
        if (downtimeBreakdown != null) {
            b.setDowntimeBreakdown(downtimeBreakdown);
        }
        if (sourceDigest != null) {
            b.setSourceMemoryDigest(sourceDigest);
        }
        if (destinationDigest != null) {
            b.setDestinationMemoryDigest(destinationDigest);
        }
        if (verification != null) {
            b.setVerificationMethod(MigrationStatistics.VerificationMethod.UNWRITTEN_PAGES_AFTER_RESUME)
                    .setPagesCompared(verification.pagesCompared())
                    .setPagesWrittenAfterResume(verification.pagesWrittenAfterResume())
                    .setChunksDiffering(verification.chunksDiffering());
        } else if (!policy.verifyMemory()) {
            b.setVerificationMethod(MigrationStatistics.VerificationMethod.NONE);
        } else if (!verifyAfterResume && phase == COMPLETED) {
            b.setVerificationMethod(MigrationStatistics.VerificationMethod.DIGEST_BEFORE_RESUME);
        }
        if (postcopyStatistics != null) {
            b.setPostcopy(postcopyStatistics.getRecoveries() >= recoveries ? postcopyStatistics
                    : postcopyStatistics.toBuilder().setRecoveries(recoveries).build());
        } else if (postcopyPath && resumeTime != null) {
            b.setPostcopy(PostcopyStatistics.newBuilder().setRecoveries(recoveries).build());
        }
        return b.build();
    }

    /**
     * Fills the fields of a {@link Migration} record that this machine owns: role, phase, mode, policy (defaults
     * filled in), config, progress, statistics (terminal phases only) and the times. The edge adds the names,
     * addresses and {@code error} (with the status code it chose, and {@link #failureReason()} as message).
     */
    public Migration.Builder writeTo(Migration.Builder b) {
        b.setRole(Migration.Role.SOURCE)
                .setPhase(phase)
                .setMode(policy.requestedMode())
                .setPolicy(policy.toProto().toBuilder().setBandwidthLimitBytesPerSecond(bandwidthLimit))
                .setProgress(progress())
                .setCreateTime(ProtoTime.toProto(createTime));
        if (config != null) {
            b.setConfig(config);
        }
        planner.modeChoice().ifPresent(c -> b.setModeChoice(toProto(c)));
        if (startTime != null) {
            b.setStartTime(ProtoTime.toProto(startTime));
        }
        if (endTime != null) {
            b.setEndTime(ProtoTime.toProto(endTime));
            b.setStatistics(statistics());
        }
        return b;
    }

    // ---------------------------------------------------------------------------------------------- internals

    private static dev.ferry.v1.ModeChoice toProto(ModePredictor.Choice c) {
        return dev.ferry.v1.ModeChoice.newBuilder().setMode(c.mode()).setAutoConverge(c.autoConverge())
                .setPredictedTotalTime(ProtoTime.toProto(c.picked().total()))
                .setPredictedDowntime(ProtoTime.toProto(c.picked().downtime()))
                .setTransferRateBytesPerSecond(c.measured().transferRate())
                .setDirtyRateBytesPerSecond(Math.max(c.measured().dirtyRate(), c.measured().writeRate()))
                .setReason(c.reason()).build();
    }

    private Duration elapsed() {
        return ProtoTime.between(createTime, endTime != null ? endTime : clock.instant());
    }

    private void enter(Phase next, String note) {
        if (next != PRECOPY) {
            progress.throttleEnded(); // the driver ends the throttle before it leaves precopy
        }
        phase = next;
        history.add(new PhaseChange<>(next, clock.instant(), note));
    }

    private void finish(Phase terminal, String reason, Aftermath a) {
        finish(terminal, Status.Code.OK, reason, a);
    }

    private void finish(Phase terminal, Status.Code code, String reason, Aftermath a) {
        failedIn = phase;
        failureCode = code;
        enter(terminal, reason);
        endTime = history.get(history.size() - 1).at();
        roundState = RoundState.IDLE;
        if (terminal != COMPLETED) {
            failureReason = reason;
            aftermath = a;
        }
    }

    /** The single place that knows when each event is valid: null if accepted, else why not. */
    private String whyNot(Event e) {
        if (e == Event.CANCEL) {
            String why = cancelRefusal();
            if (why != null) {
                return why;
            }
        }
        if (!VALID_IN.get(e).contains(phase)) {
            return isTerminal() ? "the migration has already ended (" + phase + ")"
                    : "valid only in " + VALID_IN.get(e);
        }
        return switch (e) {
            case ROUND_STARTED -> roundStartRefusal();
            case BATCH_SENT, ROUND_FINISHED -> roundState == RoundState.RUNNING ? null : "no round is running";
            case DECIDE_AFTER_ROUND -> roundState == RoundState.AWAITING_DECISION ? null
                    : roundState == RoundState.RUNNING ? "round " + progress.round() + " is still running"
                    : "no finished round awaits a decision";
            case SWITCH_TO_POSTCOPY_REQUESTED -> policy.allowsPostcopySwitch() ? null
                    : "mode is " + policy.mode() + "; only a HYBRID migration can switch to postcopy";
            case STOP_AND_COPY_STARTED -> roundState != RoundState.IDLE ? pendingRoundRefusal()
                    : lastDecision == null || lastDecision.action() != Action.STOP_AND_COPY
                    ? "the planner has not decided STOP_AND_COPY (last decision: " + lastDecisionName() + ")" : null;
            case DEVICE_STATE_STARTED -> deviceStateRefusal();
            case POSTCOPY_COMPLETED -> roundState == RoundState.RUNNING
                    ? "background pass " + progress.round() + " is still running" : null;
            case COMMITTED -> verdict == Verdict.COMMIT ? null
                    : "the verification has " + (verdict == null ? "not been compared" : "found a mismatch");
            case ROLLED_BACK -> verdict == Verdict.ROLL_BACK ? null
                    : "the verification has " + (verdict == null ? "not been compared" : "found no mismatch");
            default -> null;
        };
    }

    private String roundStartRefusal() {
        if (roundState != RoundState.IDLE) {
            return pendingRoundRefusal();
        }
        if (phase == PRECOPY && lastDecision != null && lastDecision.action() != Action.CONTINUE_PRECOPY) {
            return "the last decision was " + lastDecision.action() + ", not CONTINUE_PRECOPY";
        }
        if (phase == STOP_AND_COPY && finalRoundDone) {
            return "the stop-and-copy round has already run";
        }
        return null;
    }

    private String deviceStateRefusal() {
        if (phase == STOP_AND_COPY) {
            return finalRoundDone ? null : roundState == RoundState.RUNNING
                    ? "the stop-and-copy round is still running" : "the stop-and-copy round has not run";
        }
        if (roundState != RoundState.IDLE) {
            return pendingRoundRefusal();
        }
        boolean decidedSwitch = lastDecision != null && lastDecision.action() == Action.SWITCH_TO_POSTCOPY;
        return decidedSwitch || switchRequested ? null
                : "no switch to postcopy was decided or requested (last decision: " + lastDecisionName() + ")";
    }

    private String pendingRoundRefusal() {
        return roundState == RoundState.RUNNING ? "round " + progress.round() + " is still running"
                : "round " + progress.round() + " awaits decideAfterRound";
    }

    private String lastDecisionName() {
        return lastDecision == null ? "none" : lastDecision.action().name();
    }

    private String cancelRefusal() {
        return switch (phase) {
            case RESUMING_ON_DESTINATION -> "the source has asked the destination to run the VM"
                    + " (CompleteIncomingMigration) and it may already be running there; cancelling could lose it";
            case POSTCOPY, POSTCOPY_PAUSED -> "the VM already runs on the destination and the guest's memory is"
                    + " split between the hosts (pages not yet copied exist only on the source), so neither host"
                    + " can run it alone; let postcopy complete"
                    + (phase == POSTCOPY_PAUSED ? " (ResumeMigration reconnects the hosts)" : "");
            case VERIFYING -> "the VM runs on the destination and its memory is being verified; a mismatch gives it"
                    + " back to the source, a match completes the migration";
            case COMPLETED -> "the migration has completed; the VM runs on the destination";
            case FAILED -> "the migration has already failed: " + failureReason;
            default -> null;
        };
    }
}
