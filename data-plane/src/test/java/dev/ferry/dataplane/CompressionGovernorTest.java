package dev.ferry.dataplane;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** When compression pays: the governor fed with the costs a stream would report. */
class CompressionGovernorTest {
    static final long MIB = 1 << 20;
    /** 1 MiB batches at 4 GiB/s through LZ4 (0.25 ms each). */
    static final long COMPRESS_NANOS = 250_000;

    private final CompressionGovernor g = new CompressionGovernor(PageCompression.AUTO);

    /** One window of 1 MiB batches as the governor would see them. */
    private void window(double ratio, long waitNanosPerBatch, long busyNanosPerBatch) {
        for (int i = 0; i < CompressionGovernor.WINDOW_BATCHES; i++) {
            if (g.compressNext()) {
                long out = (long) (MIB * ratio);
                g.sent(out, MIB, out, COMPRESS_NANOS, waitNanosPerBatch, busyNanosPerBatch + COMPRESS_NANOS);
            } else {
                g.sent(MIB, 0, 0, 0, waitNanosPerBatch, busyNanosPerBatch);
            }
        }
    }

    /** How many of {@code windows} windows were sent compressed. */
    private int compressedWindows(int windows, double ratio, long wait, long busy) {
        int n = 0;
        for (int i = 0; i < windows; i++) {
            n += g.compressNext() ? 1 : 0;
            window(ratio, wait, busy);
        }
        return n;
    }

    @Test
    void offAndAlwaysIgnoreWhatTheyAreTold() {
        CompressionGovernor off = new CompressionGovernor(PageCompression.OFF);
        CompressionGovernor always = new CompressionGovernor(PageCompression.ALWAYS);
        for (int i = 0; i < 100; i++) {
            off.sent(MIB, 0, 0, 0, 10_000_000, 1);
            always.sent(MIB, MIB, MIB, 1, 0, 1);
            assertFalse(off.compressNext());
            assertTrue(always.compressNext());
        }
    }

    @Test
    void aStreamStartsRaw() {
        assertFalse(g.compressNext());
    }

    @Test
    void aLinkBoundStreamWithCompressiblePagesCompressesFromItsSecondWindowOn() {
        // Mostly waiting for the link: 10 ms per batch on the wire, 1 ms of CPU.
        assertEquals(49, compressedWindows(50, 0.3, 10_000_000, 1_000_000));
        assertTrue(g.compressing());
    }

    @Test
    void aCpuBoundStreamNeverCompresses() {
        // Loopback: the stream never waits for the link, so nothing says the link is the limit.
        assertEquals(0, compressedWindows(200, 0.3, 0, 1_000_000));
    }

    @Test
    void incompressiblePagesOnASlowLinkAreTriedEverLessOften() {
        int compressed = compressedWindows(400, 0.99, 10_000_000, 1_000_000);
        // Trials after 1, 2, 4 .. 64 raw windows, then every 64: 7 + about 5 in 400 windows.
        assertTrue(compressed >= 7 && compressed <= 14, "compressed windows: " + compressed);
        assertFalse(g.compressing());
    }

    @Test
    void compressionThatMadeTheStreamCpuBoundStaysOnWhileItStillBeatsTheLink() {
        CompressionGovernor h = new CompressionGovernor(PageCompression.AUTO);
        for (int i = 0; i < CompressionGovernor.WINDOW_BATCHES; i++) { // link-bound raw window: trial next
            h.sent(MIB, 0, 0, 0, 10_000_000, 1_000_000);
        }
        assertTrue(h.compressNext());
        // The trial with pages that compress badly is refused; then a raw link-bound window measures the link.
        for (int i = 0; i < CompressionGovernor.WINDOW_BATCHES; i++) {
            h.sent((long) (MIB * 0.95), MIB, (long) (MIB * 0.95), COMPRESS_NANOS, 10_000_000, 1_000_000);
        }
        assertFalse(h.compressNext(), "0.95 does not shrink enough");
        for (int i = 0; i < CompressionGovernor.WINDOW_BATCHES; i++) {
            h.sent(MIB, 0, 0, 0, 10_000_000, 1_000_000);
        }
        assertTrue(h.compressNext(), "a link-bound raw window (1 MiB per 11 ms: 95 MiB/s) leads to a trial");
        // The pages became compressible and the stream CPU-bound while compressing: c (1 - r) = 2.8 GiB/s beats
        // the 95 MiB/s link, so it stays on.
        for (int i = 0; i < CompressionGovernor.WINDOW_BATCHES; i++) {
            h.sent((long) (MIB * 0.3), MIB, (long) (MIB * 0.3), COMPRESS_NANOS, 0, 1_000_000);
        }
        assertTrue(h.compressNext());
    }

    @Test
    void compressionSlowerThanTheLinkIsSwitchedOff() {
        // A raw link-bound window first: 1 MiB per 1.1 ms, about 900 MiB/s.
        CompressionGovernor h = new CompressionGovernor(PageCompression.AUTO);
        for (int i = 0; i < CompressionGovernor.WINDOW_BATCHES; i++) {
            h.sent(MIB, 0, 0, 0, 300_000, 800_000);
        }
        assertTrue(h.compressNext(), "link-bound raw window: trial");
        // LZ4 at 200 MiB/s (5 ms per MiB) saving half: 100 MiB/s, far below the 900 MiB/s link.
        for (int i = 0; i < CompressionGovernor.WINDOW_BATCHES; i++) {
            h.sent((long) (MIB * 0.5), MIB, (long) (MIB * 0.5), 5_000_000, 0, 5_000_000);
        }
        assertFalse(h.compressNext());
    }
}
