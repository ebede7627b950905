package dev.ferry.control.migration;

import dev.ferry.v1.MemoryRegion;
import dev.ferry.v1.Migration;
import dev.ferry.v1.Migration.Phase;
import dev.ferry.v1.MigrationConfig;
import dev.ferry.v1.MigrationProgress;
import dev.ferry.v1.PostcopyStatistics;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;

/**
 * The destination's incoming session for one migration, as the state machine that migration_service.proto
 * documents. It starts when NegotiateMigration succeeds; every later call and page batch is an event, refused with
 * an {@link IllegalTransitionException} (FAILED_PRECONDITION at the edge) when not valid in the current state.
 *
 * <h2>Transitions</h2>
 * <pre>
 * (NegotiateMigration)  --new--> RECEIVING
 * RECEIVING             --pagesReceived(postcopy=false)--> RECEIVING
 * RECEIVING             --deviceStateReceived--> DEVICE_STATE_RECEIVED
 * DEVICE_STATE_RECEIVED --completeRequested(false)--> VERIFYING       (COMPLETED without MEMORY_DIGEST)
 * DEVICE_STATE_RECEIVED --completeRequested(true)--> POSTCOPY        (needs the accepted POSTCOPY feature)
 * COMPLETED | VERIFYING | POSTCOPY | POSTCOPY_PAUSED --completeRequested(same flag)--> unchanged (idempotent repeat)
 * POSTCOPY              --pagesReceived(postcopy=true), faultSent--> POSTCOPY
 * POSTCOPY              --linkLost--> POSTCOPY_PAUSED                 (POSTCOPY_PAUSED: no-op)
 * POSTCOPY_PAUSED | POSTCOPY --resumeRequested--> POSTCOPY            (one more recovery)
 * POSTCOPY              --postcopyCompleteRequested(0 missing)--> VERIFYING (COMPLETED without MEMORY_DIGEST)
 * VERIFYING             --verifyRequested--> VERIFYING
 * VERIFYING             --commitRequested--> COMPLETED                (COMPLETED: no-op, idempotent)
 * VERIFYING             --abortRequested--> ABORTED                   (the source takes the VM back)
 * RECEIVING | DEVICE_STATE_RECEIVED --abortRequested, or checkIdle after 60 s without an event--> ABORTED
 * ABORTED               --abortRequested--> ABORTED                   (idempotent)
 * any non-terminal      --failed--> FAILED
 * </pre>
 * Pages are accepted in RECEIVING only without the postcopy flag and in POSTCOPY only with it: a background-push
 * batch before the VM runs, or a plain copy into memory the guest is running on, means the source is confused.
 *
 * <p>Not thread-safe: the edge serializes the calls of one session. Time comes from the injected clock only.
 */
public final class DestinationStateMachine {

    /** The session states, with the {@link Migration.Phase} the destination's Migration record shows for each. */
    public enum State {
        RECEIVING(Phase.PRECOPY),
        DEVICE_STATE_RECEIVED(Phase.DEVICE_STATE),
        POSTCOPY(Phase.POSTCOPY),
        POSTCOPY_PAUSED(Phase.POSTCOPY_PAUSED),
        /** The VM runs here with every page present; the source compares memory and then commits or aborts. */
        VERIFYING(Phase.VERIFYING),
        COMPLETED(Phase.COMPLETED),
        ABORTED(Phase.CANCELLED),
        FAILED(Phase.FAILED);

        private final Phase phase;

        State(Phase phase) {
            this.phase = phase;
        }

        /** The phase of the destination's Migration record (role DESTINATION). */
        public Phase phase() {
            return phase;
        }

        public boolean isTerminal() {
            return this == COMPLETED || this == ABORTED || this == FAILED;
        }

        /** Whether the destination has run the guest's vCPUs in this state. */
        boolean vmRan() {
            return this == POSTCOPY || this == POSTCOPY_PAUSED || this == VERIFYING || this == COMPLETED;
        }
    }

    /** The events, as named in refusals. */
    public enum Event {
        PAGES_RECEIVED, DEVICE_STATE_RECEIVED, COMPLETE, FAULT_SENT, LINK_LOST, RESUME, POSTCOPY_COMPLETE, VERIFY,
        COMMIT, ABORT, FAIL
    }

    /** AbortIncomingMigration's implicit form: 60 s without any call or page in RECEIVING or DEVICE_STATE_RECEIVED. */
    public static final Duration DEFAULT_IDLE_TIMEOUT = Duration.ofSeconds(60);

    private static final Map<Event, Set<State>> VALID_IN = new EnumMap<>(Event.class);

    static {
        VALID_IN.put(Event.PAGES_RECEIVED, EnumSet.of(State.RECEIVING, State.POSTCOPY));
        VALID_IN.put(Event.DEVICE_STATE_RECEIVED, EnumSet.of(State.RECEIVING));
        VALID_IN.put(Event.COMPLETE, EnumSet.of(State.DEVICE_STATE_RECEIVED, State.COMPLETED, State.POSTCOPY,
                State.POSTCOPY_PAUSED, State.VERIFYING));
        VALID_IN.put(Event.FAULT_SENT, EnumSet.of(State.POSTCOPY, State.POSTCOPY_PAUSED));
        VALID_IN.put(Event.LINK_LOST, EnumSet.of(State.POSTCOPY, State.POSTCOPY_PAUSED));
        VALID_IN.put(Event.RESUME, EnumSet.of(State.POSTCOPY, State.POSTCOPY_PAUSED));
        VALID_IN.put(Event.POSTCOPY_COMPLETE, EnumSet.of(State.POSTCOPY));
        VALID_IN.put(Event.VERIFY, EnumSet.of(State.VERIFYING));
        VALID_IN.put(Event.COMMIT, EnumSet.of(State.VERIFYING, State.COMPLETED));
        VALID_IN.put(Event.ABORT, EnumSet.of(State.RECEIVING, State.DEVICE_STATE_RECEIVED, State.VERIFYING,
                State.ABORTED, State.FAILED));
        VALID_IN.put(Event.FAIL, EnumSet.of(State.RECEIVING, State.DEVICE_STATE_RECEIVED, State.POSTCOPY,
                State.POSTCOPY_PAUSED, State.VERIFYING));
    }

    private final InstantSource clock;
    private final MigrationConfig accepted;
    private final Duration idleTimeout;
    private final ProgressTracker progress;
    private final List<PhaseChange<State>> history = new ArrayList<>();
    private final Instant createTime;
    private final long memoryBytes;

    private State state = State.RECEIVING;
    private Instant lastActivity;
    private Instant vmRunTime;
    private Instant allPresentTime; // postcopy: every page arrived
    private Instant endTime;
    private Boolean resumedWithPostcopy;
    private boolean vmRanHere;
    private long deviceStateBytes;
    private long backgroundBytes;
    private int recoveries;
    private String failureReason;
    private Aftermath aftermath;

    /** A session in RECEIVING, negotiated now with the given accepted configuration. */
    public DestinationStateMachine(MigrationConfig accepted, InstantSource clock) {
        this(accepted, DEFAULT_IDLE_TIMEOUT, clock);
    }

    public DestinationStateMachine(MigrationConfig accepted, Duration idleTimeout, InstantSource clock) {
        this.accepted = Objects.requireNonNull(accepted, "accepted");
        this.idleTimeout = Objects.requireNonNull(idleTimeout, "idleTimeout");
        if (idleTimeout.isNegative() || idleTimeout.isZero()) {
            throw new IllegalArgumentException("idle timeout must be positive");
        }
        this.clock = Objects.requireNonNull(clock, "clock");
        this.progress = new ProgressTracker(clock);
        this.createTime = clock.instant();
        this.lastActivity = createTime;
        long bytes = 0;
        for (MemoryRegion r : accepted.getMemoryRegionsList()) {
            bytes = Math.addExact(bytes, r.getSizeBytes());
        }
        this.memoryBytes = bytes;
        progress.bytesRemaining(bytes);
        history.add(new PhaseChange<>(State.RECEIVING, createTime, "negotiated"));
    }

    // ---------------------------------------------------------------------------------------------- queries

    public State state() {
        return state;
    }

    public Phase phase() {
        return state.phase();
    }

    public boolean isTerminal() {
        return state.isTerminal();
    }

    public MigrationConfig accepted() {
        return accepted;
    }

    public List<PhaseChange<State>> history() {
        return List.copyOf(history);
    }

    /** Whether the source verifies memory after the resume (MEMORY_DIGEST accepted): VERIFYING before COMPLETED. */
    public boolean verifies() {
        return accepted.getFeaturesList().contains(MigrationConfig.Feature.MEMORY_DIGEST);
    }

    /** Whether this destination has run the guest (it deletes its VM only when the source takes it back). */
    public boolean vmRanHere() {
        return vmRanHere;
    }

    public Optional<String> failureReason() {
        return Optional.ofNullable(failureReason);
    }

    public Optional<Aftermath> aftermath() {
        return Optional.ofNullable(aftermath);
    }

    public long deviceStateBytes() {
        return deviceStateBytes;
    }

    public Instant createTime() {
        return createTime;
    }

    public Optional<Instant> endTime() {
        return Optional.ofNullable(endTime);
    }

    public boolean accepts(Event event) {
        return whyNot(event, null) == null;
    }

    public Optional<String> refusal(Event event) {
        return Optional.ofNullable(whyNot(event, null));
    }

    // ---------------------------------------------------------------------------------------------- events

    /**
     * A page batch arrived on a data-plane stream (counted when it is in guest memory).
     *
     * @param round     PageBatch.round
     * @param postcopy  PageBatch.postcopy: must be false in RECEIVING and true in POSTCOPY
     */
    public void pagesReceived(int round, boolean postcopy, long dataPages, long zeroPages) {
        require(Event.PAGES_RECEIVED, postcopy);
        if (round < 1) {
            throw new IllegalArgumentException("round must be at least 1, not " + round);
        }
        touch();
        progress.observeRound(round);
        progress.pagesMoved(dataPages, zeroPages);
        long bytes = Math.multiplyExact(dataPages, RoundStats.PAGE_BYTES);
        if (postcopy) {
            backgroundBytes += bytes;
        } else {
            // An estimate: later rounds resend pages, so this reaches 0 after about one round's worth.
            long received = Math.multiplyExact(progress.pagesSent() + progress.zeroPages(), RoundStats.PAGE_BYTES);
            progress.bytesRemaining(Math.max(0, memoryBytes - received));
        }
    }

    /** TransferDeviceState passed its checks (crc, sections): DEVICE_STATE_RECEIVED. */
    public void deviceStateReceived(long bytes) {
        require(Event.DEVICE_STATE_RECEIVED, null);
        touch();
        deviceStateBytes = bytes;
        enter(State.DEVICE_STATE_RECEIVED, "device state received");
    }

    /**
     * CompleteIncomingMigration succeeded in running the vCPUs (the edge verified the digest and restored state
     * first; a DATA_LOSS or INTERNAL there leaves the session in DEVICE_STATE_RECEIVED). postcopy = false:
     * COMPLETED; postcopy = true: POSTCOPY.
     *
     * @return true when the VM started now, false for a repeat of the call that started it (the edge answers it
     *         with the same response, as the API requires)
     */
    public boolean completeRequested(boolean postcopy) {
        require(Event.COMPLETE, postcopy);
        touch();
        if (state != State.DEVICE_STATE_RECEIVED) {
            return false;
        }
        resumedWithPostcopy = postcopy;
        vmRanHere = true;
        vmRunTime = clock.instant();
        if (postcopy) {
            enter(State.POSTCOPY, "VM runs; missing pages by postcopy");
        } else {
            progress.bytesRemaining(0);
            verifyOrFinish("VM runs; every page arrived");
        }
        return true;
    }

    private void verifyOrFinish(String note) {
        if (verifies()) {
            enter(State.VERIFYING, note + "; the source verifies memory");
        } else {
            finish(State.COMPLETED, note, null);
        }
    }

    /** A fault request was sent to the source's pager (counts PostcopyStatistics.page_faults). */
    public void faultSent() {
        require(Event.FAULT_SENT, null);
        touch();
        progress.faultCounted();
    }

    /** The data plane or pager link was cut in postcopy: POSTCOPY_PAUSED (no-op, false, if already paused). */
    public boolean linkLost(String reason) {
        require(Event.LINK_LOST, null);
        if (state == State.POSTCOPY_PAUSED) {
            return false;
        }
        enter(State.POSTCOPY_PAUSED, Objects.requireNonNull(reason, "reason"));
        return true;
    }

    /**
     * ResumeIncomingMigration: the destination reconnected to the pager. Valid in POSTCOPY_PAUSED and (if the
     * destination had not noticed the cut yet) POSTCOPY; both count as a recovery.
     */
    public void resumeRequested() {
        require(Event.RESUME, null);
        touch();
        recoveries++;
        enter(State.POSTCOPY, "recovered (" + recoveries + ")");
    }

    /**
     * CompleteIncomingPostcopy: with no page missing, VERIFYING (COMPLETED without MEMORY_DIGEST). Pages still
     * missing: refused, naming the count.
     */
    public void postcopyCompleteRequested(long missingPages) {
        require(Event.POSTCOPY_COMPLETE, null);
        touch();
        if (missingPages > 0) {
            throw new IllegalTransitionException(state, Event.POSTCOPY_COMPLETE,
                    missingPages + " pages are still missing");
        }
        progress.bytesRemaining(0);
        allPresentTime = clock.instant();
        verifyOrFinish("every page arrived");
    }

    /** VerifyIncomingMigration: the edge hashes the pages the guest has not written; nothing changes. */
    public void verifyRequested() {
        require(Event.VERIFY, null);
        touch();
    }

    /**
     * CommitIncomingMigration: the source verified memory; the VM is ours. COMPLETED. Returns false for a repeat
     * on a COMPLETED session (answered the same way).
     */
    public boolean commitRequested() {
        require(Event.COMMIT, null);
        if (state == State.COMPLETED) {
            return false;
        }
        touch();
        finish(State.COMPLETED, "memory verified by the source", null);
        return true;
    }

    /**
     * AbortIncomingMigration: before the VM ran here, or in VERIFYING (the source found our memory differs
     * from its paused original and takes the VM back), ABORTED (the edge stops the guest, closes the data plane
     * and deletes the destination VM). Idempotent on ABORTED, and accepted without change on a FAILED session
     * that never ran the VM. Refused once the VM is ours (COMPLETED) or holds pages only here (POSTCOPY).
     */
    public Aftermath abortRequested(String reason) {
        require(Event.ABORT, null);
        if (state == State.ABORTED || state == State.FAILED) {
            return aftermath;
        }
        finish(State.ABORTED, "aborted by the source: " + Objects.requireNonNull(reason, "reason"),
                Aftermath.SOURCE_KEEPS_VM);
        return aftermath;
    }

    /**
     * The session failed (e.g. a CompleteIncomingPostcopy digest mismatch, a local error). Before the VM ran here
     * the VM stays on the source (delete ours); after, it stays here (DESTINATION_KEEPS_VM: keep running it).
     */
    public Aftermath failed(String reason) {
        require(Event.FAIL, null);
        finish(State.FAILED, Objects.requireNonNull(reason, "reason"),
                vmRanHere ? Aftermath.DESTINATION_KEEPS_VM : Aftermath.SOURCE_KEEPS_VM);
        return aftermath;
    }

    /**
     * Call periodically: in RECEIVING or DEVICE_STATE_RECEIVED, after the idle timeout without any event the
     * session is ABORTED (as if the source had aborted) and true is returned. Never throws.
     */
    public boolean checkIdle() {
        if (state != State.RECEIVING && state != State.DEVICE_STATE_RECEIVED) {
            return false;
        }
        Duration idle = ProtoTime.between(lastActivity, clock.instant());
        if (idle.compareTo(idleTimeout) < 0) {
            return false;
        }
        finish(State.ABORTED, "no call or page from the source for " + ProtoTime.format(idle),
                Aftermath.SOURCE_KEEPS_VM);
        return true;
    }

    /** Time since the last call or page from the source. */
    public Duration idleFor() {
        return ProtoTime.between(lastActivity, clock.instant());
    }

    // ---------------------------------------------------------------------------------------------- output

    /** What arrived so far (bytes_remaining: memory not yet received, an estimate since pages may repeat). */
    public MigrationProgress progress() {
        return progress.snapshot(ProtoTime.between(createTime, endTime != null ? endTime : clock.instant()));
    }

    /**
     * The postcopy figures this session measures: page_faults, background_bytes, recoveries and resume_time (VM
     * start to every page present; up to now while postcopy runs). Fault latencies and vCPU blocked time are
     * measured by the fault handler at the edge, which adds them.
     */
    public PostcopyStatistics.Builder postcopyStatistics() {
        PostcopyStatistics.Builder b = PostcopyStatistics.newBuilder()
                .setPageFaults(progress.faults())
                .setBackgroundBytes(backgroundBytes)
                .setRecoveries(recoveries);
        if (Boolean.TRUE.equals(resumedWithPostcopy) && vmRunTime != null) {
            Instant until = allPresentTime != null ? allPresentTime : endTime != null ? endTime : clock.instant();
            b.setResumeTime(ProtoTime.toProto(ProtoTime.between(vmRunTime, until)));
        }
        return b;
    }

    // ---------------------------------------------------------------------------------------------- internals

    private void require(Event e, Boolean flag) {
        String why = whyNot(e, flag);
        if (why != null) {
            throw new IllegalTransitionException(state, e, why);
        }
    }

    private String whyNot(Event e, Boolean flag) {
        if (!VALID_IN.get(e).contains(state)) {
            return switch (e) {
                case ABORT -> "the destination already runs the VM; aborting would lose it";
                case FAIL -> "the session has already ended (" + state + ")";
                default -> state.isTerminal() ? "the session has already ended (" + state + ")"
                        : "valid only in " + VALID_IN.get(e);
            };
        }
        return switch (e) {
            case PAGES_RECEIVED -> flag == null || flag == (state == State.POSTCOPY) ? null
                    : state == State.POSTCOPY ? "postcopy batches must have postcopy = true"
                    : "batches with postcopy = true are only accepted once the VM runs here (POSTCOPY)";
            case COMPLETE -> completeRefusal(flag);
            case ABORT -> state == State.FAILED && vmRanHere ? "the destination already runs the VM" : null;
            case COMMIT -> state == State.COMPLETED && !verifies() ? "the session did not verify memory" : null;
            default -> null;
        };
    }

    private String completeRefusal(Boolean postcopy) {
        if (state == State.DEVICE_STATE_RECEIVED) {
            return Boolean.TRUE.equals(postcopy)
                    && !accepted.getFeaturesList().contains(MigrationConfig.Feature.POSTCOPY)
                    ? "postcopy requested but the POSTCOPY feature was not accepted" : null;
        }
        if (resumedWithPostcopy == null) {
            return "the VM was not started by CompleteIncomingMigration";
        }
        if (postcopy != null && !postcopy.equals(resumedWithPostcopy)) {
            return "the VM was already started with postcopy = " + resumedWithPostcopy;
        }
        return null;
    }

    private void touch() {
        lastActivity = clock.instant();
    }

    private void enter(State next, String note) {
        state = next;
        history.add(new PhaseChange<>(next, clock.instant(), note));
    }

    private void finish(State terminal, String reason, Aftermath a) {
        enter(terminal, reason);
        endTime = history.get(history.size() - 1).at();
        if (terminal != State.COMPLETED) {
            failureReason = reason;
            aftermath = a;
        }
    }
}
