package dev.ferry.control.migration;

import java.time.Instant;
import java.util.Objects;

/**
 * One entry of a state machine's phase history: the phase entered, when (on the machine's clock), and a short
 * note on why (the decision reason, the failure reason, or empty).
 *
 * @param <P> {@code Migration.Phase} for the source, {@code DestinationStateMachine.State} for the destination
 */
public record PhaseChange<P extends Enum<P>>(P phase, Instant at, String note) {
    public PhaseChange {
        Objects.requireNonNull(phase, "phase");
        Objects.requireNonNull(at, "at");
        note = note == null ? "" : note;
    }
}
