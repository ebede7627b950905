package dev.ferry.dataplane;

import io.grpc.Status;
import java.util.Objects;

/** A page transfer failed; {@link #status()} says how (the gRPC status of the failed stream, or CANCELLED). */
public final class PageTransferException extends Exception {
    private final transient Status status;

    public PageTransferException(Status status) {
        this(linkLoss(Objects.requireNonNull(status, "status")), true);
    }

    private PageTransferException(Status status, boolean normalized) {
        super(describe(status), status.getCause());
        this.status = status;
    }

    /**
     * A connection that closed under a call is a lost link, which callers retry: gRPC reports some of those as
     * UNKNOWN ("channel closed"), the code for bugs; they become UNAVAILABLE here.
     */
    public static Status linkLoss(Status s) {
        boolean closed = s.getCode() == Status.Code.UNKNOWN && (s.getCause() instanceof java.io.IOException
                || "channel closed".equals(s.getDescription()));
        return closed ? Status.UNAVAILABLE.withDescription("connection closed under the call ("
                + s.getDescription() + ")").withCause(s.getCause()) : s;
    }

    public Status status() {
        return status;
    }

    private static String describe(Status s) {
        return s.getDescription() == null ? s.getCode().toString() : s.getCode() + ": " + s.getDescription();
    }
}
