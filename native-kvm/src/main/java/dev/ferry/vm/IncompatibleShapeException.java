package dev.ferry.vm;

/** This host cannot give a guest the shape it had elsewhere (for example its TSC rate). */
public final class IncompatibleShapeException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final String field;

    public IncompatibleShapeException(String field, String message, Throwable cause) {
        super(message, cause);
        this.field = field;
    }

    /** The shape's part that does not fit, as named in a negotiation mismatch (e.g. "tsc_khz"). */
    public String field() {
        return field;
    }
}
