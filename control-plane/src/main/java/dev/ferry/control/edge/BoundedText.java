package dev.ferry.control.edge;

/**
 * Caller input quoted in a status message or a log line: at most {@link #MAX_QUOTED} characters, control
 * characters escaped. Without it an 8 MiB resource name came back whole in {@code grpc-message}.
 */
public final class BoundedText {
    /** Enough to recognise any valid name (ids are at most 63 characters), short enough for a log line. */
    public static final int MAX_QUOTED = 128;

    private BoundedText() {}

    /** {@code s} in double quotes, cut to {@link #MAX_QUOTED} characters with the full length noted. */
    public static String quote(String s) {
        if (s == null) {
            return "null";
        }
        int n = Math.min(s.length(), MAX_QUOTED);
        StringBuilder b = new StringBuilder(n + 32).append('"');
        for (int i = 0; i < n; i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20 || c == 0x7f) {
                b.append(String.format("\\x%02x", (int) c));
            } else {
                b.append(c);
            }
        }
        b.append('"');
        if (s.length() > n) {
            b.append("... (").append(s.length()).append(" characters)");
        }
        return b.toString();
    }

    /** {@code s} cut to {@code max} characters, for free text a caller sends (e.g. an abort reason). */
    public static String truncate(String s, int max) {
        return s.length() <= max ? s : s.substring(0, max) + "... (" + s.length() + " characters)";
    }
}
