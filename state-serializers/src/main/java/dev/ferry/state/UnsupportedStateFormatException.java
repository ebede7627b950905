package dev.ferry.state;

/**
 * A state stream whose envelope version or {@code StateStream.format_version} this build does not read: it was
 * written by a different Ferry build, and only a build that knows that format can restore it.
 */
public final class UnsupportedStateFormatException extends StateException {
    private static final long serialVersionUID = 1L;

    UnsupportedStateFormatException(String message) {
        super(message);
    }
}
