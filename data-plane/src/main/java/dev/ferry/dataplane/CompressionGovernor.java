package dev.ferry.dataplane;

/**
 * Decides, for one data-plane stream, whether its next batch is LZ4-compressed. Plain code: the stream reports what
 * each batch cost ({@link #sent}) and asks before each batch ({@link #compressNext}); every
 * {@link #WINDOW_BATCHES} batches it decides again from that window.
 *
 * <p>Compression pays when the link, not the CPU, limits the stream. A stream that waits for the link (HTTP/2 flow
 * control or the bandwidth limiter) for at least {@link #LINK_BOUND_SHARE} of a window is link-bound.
 * <ul>
 *   <li>Compressing and still link-bound, with pages that shrink (ratio under {@link #MAX_RATIO}): it pays, since
 *       the link is the bottleneck and carries fewer bytes. Keep on.</li>
 *   <li>Compressing and no longer link-bound: the CPU is now the limit. Raw, a byte costs {@code 1/L} on a link
 *       moving {@code L} bytes/s; compressed, {@code 1/c + r/L} with compressor speed {@code c} and ratio {@code r}.
 *       So keep on only while {@code c (1 - r) > L} (with a {@link #MARGIN}), {@code L} being the wire rate of the
 *       last link-bound raw window; else go raw, which measures the link again.</li>
 *   <li>Raw and link-bound: try compressing the next window (a trial), unless a trial failed lately: each failed
 *       trial doubles the raw windows before the next, up to {@link #MAX_BACKOFF_WINDOWS}, so incompressible pages
 *       cost at most one compressed window in that many. Raw and not link-bound: stay raw.</li>
 * </ul>
 * A stream starts raw: on a CPU-bound stream (loopback, a fast link) AUTO then costs nothing.
 *
 * <p>{@link PageCompression#ALWAYS} compresses every batch; {@link PageCompression#OFF} none. Not thread-safe: one
 * per stream worker.
 */
final class CompressionGovernor {
    /** Batches per decision window (up to 8 MiB of raw pages). */
    static final int WINDOW_BATCHES = 8;
    static final double LINK_BOUND_SHARE = 0.2;
    /** Pages that compress to more than this share are not worth the CPU. */
    static final double MAX_RATIO = 0.9;
    /** Compression must win by 25 %, so noise does not flip it on. */
    static final double MARGIN = 1.25;
    static final int MAX_BACKOFF_WINDOWS = 64;

    private final PageCompression mode;
    private boolean compressing;
    private boolean trial;
    private int backoffWindows = 1;
    private int windowsUntilTrial;
    /** Wire bytes/s of the last link-bound raw window; 0 before one was seen. */
    private double linkRate;

    // The current window.
    private int batches;
    private long wireBytes;
    private long compressInputBytes;
    private long compressOutputBytes;
    private long compressNanos;
    private long waitNanos;
    private long busyNanos;

    CompressionGovernor(PageCompression mode) {
        this.mode = mode;
    }

    /** Whether the next batch with data should be compressed. */
    boolean compressNext() {
        return switch (mode) {
            case OFF -> false;
            case ALWAYS -> true;
            case AUTO -> compressing || trial;
        };
    }

    /**
     * One batch went out.
     *
     * @param wire         bytes of its data field as sent (raw, or the LZ4 block)
     * @param compressedIn raw bytes that went through the compressor (0 when not compressed)
     * @param compressedOut what the compressor made of them
     * @param compressTime nanoseconds in the compressor
     * @param waitTime     nanoseconds spent waiting for flow control and the bandwidth limiter before sending it
     * @param busyTime     nanoseconds spent otherwise on it (planning, reading, compressing, handing to gRPC)
     */
    void sent(long wire, long compressedIn, long compressedOut, long compressTime, long waitTime,
            long busyTime) {
        if (mode != PageCompression.AUTO) {
            return;
        }
        batches++;
        wireBytes += wire;
        compressInputBytes += compressedIn;
        compressOutputBytes += compressedOut;
        compressNanos += compressTime;
        waitNanos += waitTime;
        busyNanos += busyTime;
        if (batches >= WINDOW_BATCHES) {
            decide();
            batches = 0;
            wireBytes = compressInputBytes = compressOutputBytes = 0;
            compressNanos = waitNanos = busyNanos = 0;
        }
    }

    private void decide() {
        long elapsed = waitNanos + busyNanos;
        if (elapsed <= 0) {
            return;
        }
        boolean linkBound = (double) waitNanos / elapsed >= LINK_BOUND_SHARE;
        if (!compressing && !trial) {
            if (linkBound) {
                linkRate = wireBytes * 1e9 / elapsed;
                if (--windowsUntilTrial <= 0) {
                    trial = true;
                }
            }
            return;
        }
        if (compressInputBytes == 0) {
            return; // no data in this window (zero pages only): nothing learnt, decide on the next
        }
        boolean wasTrial = trial;
        trial = false;
        double ratio = (double) compressOutputBytes / compressInputBytes;
        double speed = compressNanos > 0 ? compressInputBytes * 1e9 / compressNanos : Double.MAX_VALUE;
        boolean shrinks = ratio < MAX_RATIO;
        compressing = shrinks && (linkBound || (linkRate > 0 && speed * (1 - ratio) > MARGIN * linkRate));
        if (compressing) {
            backoffWindows = 1;
        } else if (wasTrial || !shrinks) {
            windowsUntilTrial = backoffWindows; // it did not pay: not again for a while
            backoffWindows = Math.min(MAX_BACKOFF_WINDOWS, backoffWindows * 2);
        } else {
            windowsUntilTrial = 0; // it stopped paying: measure the link raw, and try again if it is the limit
        }
    }

    boolean compressing() {
        return compressing;
    }
}
