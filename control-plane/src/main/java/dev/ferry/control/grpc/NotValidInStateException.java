package dev.ferry.control.grpc;

/**
 * A call refused because of the state something is in, not because of a bug: the only
 * {@link IllegalStateException} that {@link Calls} answers with FAILED_PRECONDITION (which callers may retry once
 * the state changed). Every other IllegalStateException is a broken invariant, answered INTERNAL.
 */
public class NotValidInStateException extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    public NotValidInStateException(String message) {
        super(message);
    }
}
