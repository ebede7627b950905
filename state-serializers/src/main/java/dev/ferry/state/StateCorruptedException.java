package dev.ferry.state;

/**
 * The bytes of a state stream were damaged on the way (checksum mismatch, truncation, trailing bytes, an
 * impossible length): sending or reading them again may work, unlike a stream that is well-formed but refused.
 */
public final class StateCorruptedException extends StateException {
    private static final long serialVersionUID = 1L;

    StateCorruptedException(String message) {
        super(message);
    }

    StateCorruptedException(String message, Throwable cause) {
        super(message, cause);
    }
}
