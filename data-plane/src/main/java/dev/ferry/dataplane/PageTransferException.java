package dev.ferry.dataplane;

import io.grpc.Status;
import java.util.Objects;

/** A page transfer failed; {@link #status()} says how (the gRPC status of the failed stream, or CANCELLED). */
public final class PageTransferException extends Exception {
    private final transient Status status;

    public PageTransferException(Status status) {
        super(describe(status), status.getCause());
        this.status = Objects.requireNonNull(status, "status");
    }

    public Status status() {
        return status;
    }

    private static String describe(Status s) {
        return s.getDescription() == null ? s.getCode().toString() : s.getCode() + ": " + s.getDescription();
    }
}
