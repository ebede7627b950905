package dev.ferry.control.migration;

import com.google.protobuf.Timestamp;
import java.time.Duration;
import java.time.Instant;

/** Conversions between java.time and the protobuf well-known types. */
final class ProtoTime {
    private ProtoTime() {
    }

    static com.google.protobuf.Duration toProto(Duration d) {
        return com.google.protobuf.Duration.newBuilder().setSeconds(d.getSeconds()).setNanos(d.getNano()).build();
    }

    static Timestamp toProto(Instant t) {
        return Timestamp.newBuilder().setSeconds(t.getEpochSecond()).setNanos(t.getNano()).build();
    }

    static Instant fromProto(Timestamp t) {
        return Instant.ofEpochSecond(t.getSeconds(), Math.floorMod(t.getNanos(), 1_000_000_000));
    }

    /**
     * A protobuf Duration as java.time, refusing invalid ones (nanos out of range, or seconds and nanos of
     * different signs).
     */
    static Duration fromProto(com.google.protobuf.Duration d, String field) {
        long s = d.getSeconds();
        int n = d.getNanos();
        if (n <= -1_000_000_000 || n >= 1_000_000_000 || (s > 0 && n < 0) || (s < 0 && n > 0)) {
            throw new IllegalArgumentException(field + " is not a valid Duration (seconds " + s + ", nanos " + n + ")");
        }
        return Duration.ofSeconds(s, n);
    }

    /** {@code to - from}, never negative (a wall clock stepped back yields zero, not a negative time). */
    static Duration between(Instant from, Instant to) {
        Duration d = Duration.between(from, to);
        return d.isNegative() ? Duration.ZERO : d;
    }

    /** Human-readable duration for messages: "300 ms", "1.250 s". */
    static String format(Duration d) {
        long ms = d.toMillis();
        if (ms < 1000) {
            return d.toNanos() % 1_000_000 == 0 ? ms + " ms" : String.format("%.3f ms", d.toNanos() / 1e6);
        }
        return String.format("%.3f s", d.toNanos() / 1e9);
    }

    /** Human-readable rate for messages: "12.5 MiB/s". */
    static String formatRate(long bytesPerSecond) {
        return String.format("%.1f MiB/s", bytesPerSecond / (1024.0 * 1024.0));
    }
}
