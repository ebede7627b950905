package dev.ferry.guest;

import java.util.Locale;

/** The order in which the guest workload picks pages to write. */
public enum AccessPattern {
    SEQUENTIAL(GuestAbi.PATTERN_SEQUENTIAL),
    RANDOM(GuestAbi.PATTERN_RANDOM),
    /** Most writes go to a small hot set; the rest anywhere in the working set. */
    HOT_COLD(GuestAbi.PATTERN_HOT_COLD);

    final int abiValue;

    AccessPattern(int abiValue) {
        this.abiValue = abiValue;
    }

    /** "sequential", "random" or "hot-cold". */
    public String cliName() {
        return name().toLowerCase(Locale.ROOT).replace('_', '-');
    }

    public static AccessPattern parse(String s) {
        for (AccessPattern p : values()) {
            if (p.cliName().equalsIgnoreCase(s) || p.name().equalsIgnoreCase(s)) {
                return p;
            }
        }
        throw new IllegalArgumentException("unknown access pattern '" + s + "' (sequential, random, hot-cold)");
    }
}
