package dev.ferry.cli;

import java.time.Duration;
import java.util.Locale;

/** Parses durations written like 500us, 1ms, 2s, 1.5s. */
final class Durations {
    private Durations() {}

    static Duration parse(String s) {
        String t = s.trim().toLowerCase(Locale.ROOT);
        double scaleNanos;
        String num;
        if (t.endsWith("us")) {
            scaleNanos = 1e3;
            num = t.substring(0, t.length() - 2);
        } else if (t.endsWith("ms")) {
            scaleNanos = 1e6;
            num = t.substring(0, t.length() - 2);
        } else if (t.endsWith("s")) {
            scaleNanos = 1e9;
            num = t.substring(0, t.length() - 1);
        } else {
            throw new IllegalArgumentException("not a duration: '" + s + "' (examples: 500us, 1ms, 2s)");
        }
        try {
            return Duration.ofNanos(Math.round(Double.parseDouble(num) * scaleNanos));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("not a duration: '" + s + "' (examples: 500us, 1ms, 2s)");
        }
    }
}
