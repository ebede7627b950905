package dev.ferry.v1;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import io.grpc.Status;
import java.util.Optional;

/**
 * Reads {@code Migration.error}: its gRPC code, the failing step (the reason of the {@code google.rpc.ErrorInfo}
 * with domain {@value #DOMAIN}) and whether creating the migration again may succeed unchanged.
 */
public final class MigrationErrors {
    /** The {@code ErrorInfo.domain} of a migration's error. */
    public static final String DOMAIN = "ferry.dev";

    private MigrationErrors() {}

    /**
     * Retry (create the migration again) on UNAVAILABLE, DEADLINE_EXCEEDED (the link or a deadline),
     * RESOURCE_EXHAUSTED (a busy host) and ABORTED (e.g. no convergence at this dirty rate). Not on DATA_LOSS
     * (investigate), FAILED_PRECONDITION or INVALID_ARGUMENT (fix the peer or the request), INTERNAL (a bug), CANCELLED.
     */
    public static boolean retryable(Status.Code code) {
        return switch (code) {
            case UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED -> true;
            default -> false;
        };
    }

    public static Status.Code code(Migration m) {
        return Status.fromCodeValue(m.getError().getCode()).getCode();
    }

    /** The failing step, e.g. PRECOPY_ROUND, SWITCHOVER, VERIFY; empty for an agent that does not say. */
    public static Optional<String> step(Migration m) {
        for (Any a : m.getError().getDetailsList()) {
            if (a.is(ErrorInfo.class)) {
                try {
                    ErrorInfo info = a.unpack(ErrorInfo.class);
                    if (DOMAIN.equals(info.getDomain())) {
                        return Optional.of(info.getReason());
                    }
                } catch (InvalidProtocolBufferException e) {
                    return Optional.empty(); // a detail we cannot read says nothing about the step
                }
            }
        }
        return Optional.empty();
    }

    /** One line: {@code "UNAVAILABLE in PRECOPY_ROUND (retryable): <message>"}. */
    public static String summary(Migration m) {
        Status.Code c = code(m);
        return c + step(m).map(s -> " in " + s).orElse("") + (retryable(c) ? " (retryable)" : "") + ": "
                + m.getError().getMessage();
    }
}
