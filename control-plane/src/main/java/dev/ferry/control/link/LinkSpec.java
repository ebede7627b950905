package dev.ferry.control.link;

import java.util.Locale;

/**
 * How the link between two hosts is shaped, as {@code ferry demo --link} takes it: words in any order,
 * e.g. {@code "rate 1gbit loss 0.1%"}. An empty spec is an unshaped veth pair.
 *
 * @param rateBitsPerSecond bandwidth each way (tc tbf), 0 = unlimited
 * @param lossPercent       packets dropped at random each way (nftables), 0 = none
 */
public record LinkSpec(long rateBitsPerSecond, double lossPercent) {
    public static final LinkSpec UNSHAPED = new LinkSpec(0, 0);

    public LinkSpec {
        if (rateBitsPerSecond < 0) {
            throw new IllegalArgumentException("link rate must be positive");
        }
        if (lossPercent < 0 || lossPercent >= 100) {
            throw new IllegalArgumentException("link loss must be within 0%..100%, got " + lossPercent + "%");
        }
    }

    /**
     * Parses {@code rate N[k|m|g]bit} and {@code loss P%}. {@code delay} is refused: these kernels have no
     * netem, and a spec must not promise what the link will not do.
     */
    public static LinkSpec parse(String spec) {
        String[] w = spec.trim().toLowerCase(Locale.ROOT).split("\\s+");
        long rate = 0;
        double loss = 0;
        for (int i = 0; i < w.length; i++) {
            if (w[i].isEmpty()) {
                continue;
            }
            if (i + 1 >= w.length) {
                throw new IllegalArgumentException("link spec '" + spec + "': '" + w[i] + "' needs a value");
            }
            switch (w[i]) {
                case "rate" -> rate = bits(w[++i], spec);
                case "loss" -> loss = percent(w[++i], spec);
                case "delay" -> throw new IllegalArgumentException("link spec '" + spec + "': delay needs tc netem,"
                        + " which this kernel does not have; shape rate and loss only");
                default -> throw new IllegalArgumentException("link spec '" + spec + "': unknown word '" + w[i]
                        + "' (rate, loss)");
            }
        }
        return new LinkSpec(rate, loss);
    }

    private static long bits(String v, String spec) {
        if (!v.endsWith("bit")) {
            throw new IllegalArgumentException("link spec '" + spec + "': rate '" + v + "' must end in bit, e.g. 1gbit");
        }
        String n = v.substring(0, v.length() - 3);
        long scale = 1;
        char unit = n.isEmpty() ? ' ' : n.charAt(n.length() - 1);
        switch (unit) {
            case 'k' -> scale = 1_000L;
            case 'm' -> scale = 1_000_000L;
            case 'g' -> scale = 1_000_000_000L;
            default -> scale = 1;
        }
        if (scale != 1) {
            n = n.substring(0, n.length() - 1);
        }
        try {
            double d = Double.parseDouble(n);
            if (d <= 0) {
                throw new NumberFormatException();
            }
            return (long) (d * scale);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("link spec '" + spec + "': bad rate '" + v + "'");
        }
    }

    private static double percent(String v, String spec) {
        try {
            return Double.parseDouble(v.endsWith("%") ? v.substring(0, v.length() - 1) : v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("link spec '" + spec + "': bad loss '" + v + "'");
        }
    }

    /** As {@link #parse} reads it. */
    @Override
    public String toString() {
        StringBuilder b = new StringBuilder();
        if (rateBitsPerSecond > 0) {
            b.append("rate ").append(rateBitsPerSecond).append("bit");
        }
        if (lossPercent > 0) {
            b.append(b.length() > 0 ? " " : "").append("loss ").append(lossPercent).append('%');
        }
        return b.length() == 0 ? "unshaped" : b.toString();
    }
}
