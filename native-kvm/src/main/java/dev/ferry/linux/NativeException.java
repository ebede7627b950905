package dev.ferry.linux;

import com.sun.jna.Native;

/**
 * A failed system call, named by the operation and errno symbol:
 * {@code "KVM_RUN: EINTR (4): Interrupted system call"}.
 *
 * <p>{@link #check(int, String)} must run on the thread that made the call, immediately after it:
 * it reads JNA's per-thread copy of errno.
 */
public class NativeException extends RuntimeException {
    private final String operation;
    private final int errno;

    public NativeException(String operation, int errno) {
        this(operation, errno, operation + ": " + Errno.name(errno) + " (" + errno + "): " + Errno.description(errno));
    }

    /** For failures that are not an errno (e.g. a partial KVM_GET_MSRS); {@code errno} may be 0. */
    protected NativeException(String operation, int errno, String message) {
        super(message);
        this.operation = operation;
        this.errno = errno;
    }

    /** The failed operation, e.g. {@code "KVM_RUN"} or {@code "open(/dev/kvm)"}. */
    public String operation() {
        return operation;
    }

    /** The errno value, or 0 when the failure was not reported through errno. */
    public int errno() {
        return errno;
    }

    /** The errno symbol, e.g. {@code "EINTR"}; {@code "0"} when {@link #errno()} is 0. */
    public String errnoName() {
        return errno == 0 ? "0" : Errno.name(errno);
    }

    /** True when this failure carries the given errno. */
    public boolean is(int errnoValue) {
        return errno == errnoValue;
    }

    /** The exception for the errno left by the last native call on this thread. */
    public static NativeException lastError(String operation) {
        return new NativeException(operation, Native.getLastError());
    }

    /** Throws {@link NativeException} when {@code rc < 0}, using this thread's errno; else returns rc. */
    public static int check(int rc, String operation) {
        if (rc < 0) {
            throw lastError(operation);
        }
        return rc;
    }

    /** Throws {@link NativeException} when {@code rc < 0}, using this thread's errno; else returns rc. */
    public static long check(long rc, String operation) {
        if (rc < 0) {
            throw lastError(operation);
        }
        return rc;
    }
}
