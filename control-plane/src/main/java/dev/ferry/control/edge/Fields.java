package dev.ferry.control.edge;

import com.google.protobuf.Duration;
import com.google.protobuf.ProtocolMessageEnum;
import io.grpc.StatusRuntimeException;
import java.util.Locale;

/**
 * Range checks for request fields, each failing with INVALID_ARGUMENT and a message that names the field and the
 * value asked (uint32/uint64 fields read unsigned: 2^32 - 1 is "4294967295", never -1).
 */
public final class Fields {
    /** Longest host:port we accept: a 253-character DNS name or a bracketed IPv6 address, and a port. */
    public static final int MAX_ADDRESS = 300;

    private Fields() {}

    public static StatusRuntimeException invalid(String message) {
        return Names.invalid(message);
    }

    /** A uint32 field in [min, max]; returns it as a long. */
    public static long uint32(String field, int value, long min, long max) {
        long v = Integer.toUnsignedLong(value);
        if (v < min) {
            throw invalid(field + " must be at least " + min + ", got " + v);
        }
        if (v > max) {
            throw invalid(field + " " + v + " is too large (at most " + max + ")");
        }
        return v;
    }

    /** A uint64 byte size in [0, max] (max below 2^63), multiple of {@code multiple} (when not 0). */
    public static long bytes(String field, long value, long max, long multiple) {
        if (Long.compareUnsigned(value, max) > 0) {
            throw invalid(field + " " + Long.toUnsignedString(value) + " (" + human(value) + ") is too large: at most "
                    + max + " (" + human(max) + ")");
        }
        if (multiple > 0 && value % multiple != 0) {
            throw invalid(field + " " + value + " is not a multiple of " + multiple);
        }
        return value;
    }

    /** A uint64 count or rate in [0, max]. */
    public static long uint64(String field, long value, long max) {
        if (Long.compareUnsigned(value, max) > 0) {
            throw invalid(field + " " + Long.toUnsignedString(value) + " is too large (at most " + max + ")");
        }
        return value;
    }

    /** A protobuf Duration in [min, max] (both java.time), checked for the Duration type's own rules first. */
    public static java.time.Duration duration(String field, Duration d, java.time.Duration min, java.time.Duration max) {
        long s = d.getSeconds();
        int n = d.getNanos();
        if (n <= -1_000_000_000 || n >= 1_000_000_000 || (s > 0 && n < 0) || (s < 0 && n > 0)
                || Math.abs(s) > 315_576_000_000L) {
            throw invalid(field + " is not a valid google.protobuf.Duration (seconds " + s + ", nanos " + n + ")");
        }
        java.time.Duration j = java.time.Duration.ofSeconds(s, n);
        if (j.compareTo(min) < 0) {
            throw invalid(field + " " + j + " is too short (at least " + min + ")");
        }
        if (j.compareTo(max) > 0) {
            throw invalid(field + " " + j + " is too long (at most " + max + ")");
        }
        return j;
    }

    /** An enum value this server knows: an unknown number (UNRECOGNIZED) is INVALID_ARGUMENT. */
    public static <E extends Enum<E> & ProtocolMessageEnum> E known(String field, E value, int number) {
        if (value.name().equals("UNRECOGNIZED")) {
            throw invalid(field + " has unknown value " + number);
        }
        return value;
    }

    /** A host:port address (not a gRPC target URI); empty is refused when {@code required}. */
    public static String hostPort(String field, String address, boolean required) {
        if (address.isEmpty()) {
            if (required) {
                throw invalid(field + " is required (host:port)");
            }
            return address;
        }
        if (address.length() > MAX_ADDRESS) {
            throw invalid(field + " " + BoundedText.quote(address) + " must be host:port, at most " + MAX_ADDRESS
                    + " characters");
        }
        int colon = address.lastIndexOf(':');
        int port = -1;
        try {
            port = colon > 0 ? Integer.parseInt(address.substring(colon + 1)) : -1;
        } catch (NumberFormatException e) {
            // reported below
        }
        if (port < 1 || port > 65535 || address.substring(0, colon).contains("/")
                || address.chars().anyMatch(c -> c <= ' ' || c >= 0x7f)) {
            throw invalid(field + " must be host:port, not " + BoundedText.quote(address));
        }
        return address;
    }

    /** Bytes as a person reads them: 4.0 EiB, 32.0 GiB, 512 B. */
    public static String human(long bytes) {
        if (bytes >= 0 && bytes < 1024) {
            return bytes + " B";
        }
        double v = bytes >= 0 ? bytes : bytes + 0x1p64; // unsigned
        String[] units = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format(Locale.ROOT, "%.1f %s", v, units[u]);
    }
}
