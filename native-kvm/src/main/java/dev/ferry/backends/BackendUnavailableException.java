package dev.ferry.backends;

/** A backend cannot run on this host; the message says what is missing and what would fix it, in one line. */
public final class BackendUnavailableException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public BackendUnavailableException(String message) {
        super(message, null, false, false);
    }
}
