package dev.ferry.cli;

/** A dirty rate in bytes per second ("100m"), "0" for fill-once-then-quiet, or "unlimited". */
public record Rate(long bytesPerSecond, boolean unlimited) {
    public static Rate parse(String s) {
        if (s.trim().equalsIgnoreCase("unlimited") || s.trim().equalsIgnoreCase("max")) {
            return new Rate(0, true);
        }
        return new Rate(ByteSize.parse(s).bytes(), false);
    }
}
