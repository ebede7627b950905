package dev.ferry.control.migration;

import java.time.Duration;
import java.util.Objects;
import java.util.Optional;

/**
 * What the source does after a precopy round, as decided by {@link PrecopyPlanner#decide}.
 *
 * @param action            what to do next
 * @param reason            one sentence for logs, the phase history and (for FAIL) the migration's error
 * @param converged         true only for STOP_AND_COPY when the expected downtime is within max_downtime; false
 *                          for a stop-and-copy forced by policy CONTINUE on non-convergence
 * @param expectedDowntime  the estimate the decision was based on; empty when it could not be estimated yet (no
 *                          transfer rate measured while pages remain)
 */
public record Decision(Action action, String reason, boolean converged, Optional<Duration> expectedDowntime) {
    /** The possible decisions. */
    public enum Action {
        /** Run another precopy round. */
        CONTINUE_PRECOPY,
        /** Pause the vCPUs and send the remaining dirty pages in one last round, then device state. */
        STOP_AND_COPY,
        /** (HYBRID only) pause the vCPUs, send device state and let the destination run the VM by postcopy. */
        SWITCH_TO_POSTCOPY,
        /** Give up: the VM keeps running on the source and the destination is discarded. */
        FAIL
    }

    public Decision {
        Objects.requireNonNull(action, "action");
        Objects.requireNonNull(reason, "reason");
        Objects.requireNonNull(expectedDowntime, "expectedDowntime");
        if (converged && action != Action.STOP_AND_COPY) {
            throw new IllegalArgumentException("only STOP_AND_COPY can be a converged decision");
        }
    }
}
