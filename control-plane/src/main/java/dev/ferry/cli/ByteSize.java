package dev.ferry.cli;

import java.util.Locale;

/** A byte count written with an optional k/m/g/t suffix (binary units): 4k, 256m, 1g. */
public record ByteSize(long bytes) {
    public static ByteSize parse(String s) {
        String t = s.trim().toLowerCase(Locale.ROOT);
        if (t.endsWith("ib")) {
            t = t.substring(0, t.length() - 2);
        } else if (t.endsWith("b")) {
            t = t.substring(0, t.length() - 1);
        }
        long mult = 1;
        if (!t.isEmpty()) {
            switch (t.charAt(t.length() - 1)) {
                case 'k' -> mult = 1L << 10;
                case 'm' -> mult = 1L << 20;
                case 'g' -> mult = 1L << 30;
                case 't' -> mult = 1L << 40;
                default -> mult = 1;
            }
            if (mult != 1) {
                t = t.substring(0, t.length() - 1);
            }
        }
        try {
            long n = Long.parseLong(t);
            if (n < 0) {
                throw new IllegalArgumentException("size must not be negative: " + s);
            }
            return new ByteSize(Math.multiplyExact(n, mult));
        } catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException("not a size: '" + s + "' (examples: 4096, 64k, 256m, 1g)");
        }
    }
}
