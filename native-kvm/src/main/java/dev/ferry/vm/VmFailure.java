package dev.ferry.vm;

/** The VM cannot go on: a guest crash, an unexpected exit or a failing KVM call. */
public final class VmFailure extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public VmFailure(String message) {
        super(message);
    }

    public VmFailure(String message, Throwable cause) {
        super(message, cause);
    }
}
