package dev.ferry.control.grpc;

import dev.ferry.linux.Errno;
import dev.ferry.linux.NativeException;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;

/** The gRPC status for a failed system call: what was being done, the call, and its errno name. */
public final class NativeFailures {
    private NativeFailures() {}

    /**
     * RESOURCE_EXHAUSTED when the host ran out (memory, file descriptors: retry elsewhere or later),
     * FAILED_PRECONDITION when this host cannot do it at all (no such device, not permitted, a shape KVM refuses),
     * INTERNAL for anything else.
     */
    public static StatusRuntimeException status(String doing, NativeException e) {
        Status code = switch (e.errno()) {
            case Errno.ENOMEM, Errno.EMFILE, Errno.ENFILE, Errno.ENOSPC, Errno.EAGAIN -> Status.RESOURCE_EXHAUSTED;
            case Errno.ENODEV, Errno.ENOENT, Errno.ENXIO, Errno.EPERM, Errno.EACCES, Errno.EINVAL, Errno.E2BIG ->
                    Status.FAILED_PRECONDITION;
            default -> Status.INTERNAL;
        };
        return code.withDescription(doing + " failed: " + e.operation() + " returned " + e.errnoName()
                + " (" + e.getMessage() + ")").asRuntimeException();
    }
}
