package dev.ferry.control.migration;

import dev.ferry.control.grpc.NotValidInStateException;

/**
 * An event arrived that is not valid in a migration state machine's current phase.
 *
 * <p>The state machine is unchanged when this is thrown. The gRPC edge maps it to {@code FAILED_PRECONDITION}
 * with {@link #getMessage()} as the description, which names the phase, the event and why it was refused, e.g.
 * {@code "CANCEL is not valid in phase POSTCOPY: the VM already runs on the destination ..."}.
 */
public final class IllegalTransitionException extends NotValidInStateException {
    private static final long serialVersionUID = 1L;

    private final Enum<?> phase;
    private final Enum<?> event;
    private final String reason;

    public IllegalTransitionException(Enum<?> phase, Enum<?> event, String reason) {
        super(event.name() + " is not valid in phase " + phase.name() + ": " + reason);
        this.phase = phase;
        this.event = event;
        this.reason = reason;
    }

    /** The phase the machine was (and still is) in: a {@code Migration.Phase} or an {@code DestinationStateMachine.State}. */
    public Enum<?> phase() {
        return phase;
    }

    /** The refused event: a {@code SourceStateMachine.Event} or an {@code DestinationStateMachine.Event}. */
    public Enum<?> event() {
        return event;
    }

    /** Why the event was refused, without the phase and event prefix. */
    public String reason() {
        return reason;
    }
}
