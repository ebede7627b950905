package dev.ferry.dataplane;

import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.PageHashes;
import java.nio.ByteBuffer;
import java.util.Objects;
import java.util.concurrent.atomic.LongAdder;

/**
 * Precopy's {@link IncomingPages}: plain copies into guest memory the guest is not running on. Each page's hash
 * is computed from guest memory after the copy (what landed, not what the wire said). Zero ranges are punched out
 * of the memfd (MADV_REMOVE: reads see zeros and the memory is freed), or filled with zeros where that fails.
 *
 * <p>Thread-safe: streams write disjoint pages concurrently; absolute bulk puts on the shared region view do not
 * touch its position, and the counters are {@link LongAdder}s (written by every stream, read rarely).
 */
public final class MemoryPageWriter implements IncomingPages, AutoCloseable {
    private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(64 * PageWire.PAGE_SIZE).asReadOnlyBuffer();

    private final GuestMemory memory;
    private final PageHashes hashes;
    private final LongAdder pagesWritten = new LongAdder();
    private final LongAdder zeroPagesWritten = new LongAdder();
    private final LongAdder bytesReceived = new LongAdder();
    private final MemoryFence fence = new MemoryFence();

    public MemoryPageWriter(GuestMemory memory, PageHashes hashes) {
        this.memory = Objects.requireNonNull(memory, "memory");
        this.hashes = Objects.requireNonNull(hashes, "hashes");
    }

    @Override
    public GuestMemory memory() {
        return memory;
    }

    @Override
    public PageHashes hashes() {
        return hashes;
    }

    @Override
    public void writePages(long gpa, int pages, ByteBuffer data) {
        enter();
        try {
            writeAndHash(memory, hashes, gpa, pages, data);
        } finally {
            fence.exit();
        }
        pagesWritten.add(pages);
        bytesReceived.add((long) pages * PageWire.PAGE_SIZE);
    }

    @Override
    public void zeroPages(long gpa, long pages) {
        enter();
        try {
            zeroAndHash(memory, hashes, gpa, pages);
        } finally {
            fence.exit();
        }
        zeroPagesWritten.add(pages);
    }

    /**
     * Stops accepting pages: waits for writes in progress, then every later write fails with
     * IllegalStateException (the stream ends with FAILED_PRECONDITION). After this returns nothing of the data plane
     * writes to the memory any more, so it may be unmapped. Idempotent.
     */
    @Override
    public void close() {
        fence.close();
    }

    private void enter() {
        if (!fence.enter()) {
            throw new IllegalStateException("session closed: it no longer accepts pages");
        }
    }

    /** Data pages written so far. */
    public long pagesWritten() {
        return pagesWritten.sum();
    }

    /** Zero pages applied so far. */
    public long zeroPagesWritten() {
        return zeroPagesWritten.sum();
    }

    /** Page data bytes received so far (4096 per data page). */
    public long bytesReceived() {
        return bytesReceived.sum();
    }

    /**
     * The precopy write, for other {@link IncomingPages} implementations to reuse: copies {@code pages} pages from
     * {@code data} (from its position, which is left unchanged) into memory at {@code gpa}, then hashes each page
     * from memory into {@code hashes}. The range must lie within one memory region.
     */
    public static void writeAndHash(GuestMemory memory, PageHashes hashes, long gpa, int pages, ByteBuffer data) {
        MemoryRegion r = region(memory, gpa, pages);
        int len = pages * PageWire.PAGE_SIZE;
        if (data.remaining() < len) {
            throw new IllegalArgumentException("data holds " + data.remaining() + " bytes, " + len + " needed");
        }
        int off = (int) (gpa - r.guestPhysAddr());
        r.view().put(off, data, data.position(), len);
        ByteBuffer page = r.view().duplicate();
        for (int i = 0; i < pages; i++) {
            int o = off + i * PageWire.PAGE_SIZE;
            page.clear().position(o).limit(o + PageWire.PAGE_SIZE);
            long g = gpa + (long) i * PageWire.PAGE_SIZE;
            hashes.set(g, PageHashes.hashPage(page, g));
        }
    }

    /** The precopy zeroing, for reuse: makes the pages zero and sets their hashes to 0. Within one region. */
    public static void zeroAndHash(GuestMemory memory, PageHashes hashes, long gpa, long pages) {
        if (pages > Integer.MAX_VALUE / PageWire.PAGE_SIZE) {
            throw new IllegalArgumentException("zero range too large: " + pages + " pages");
        }
        MemoryRegion r = region(memory, gpa, (int) pages);
        long off = gpa - r.guestPhysAddr();
        long len = pages * PageWire.PAGE_SIZE;
        try {
            r.mapping().discard(off, len);
        } catch (RuntimeException e) {
            // MADV_REMOVE is refused by some backings; zero by hand then.
            for (long o = 0; o < len; o += ZEROS.capacity()) {
                int n = (int) Math.min(ZEROS.capacity(), len - o);
                r.view().put((int) (off + o), ZEROS, 0, n);
            }
        }
        for (long i = 0; i < pages; i++) {
            hashes.set(gpa + i * PageWire.PAGE_SIZE, 0);
        }
    }

    private static MemoryRegion region(GuestMemory memory, long gpa, int pages) {
        if ((gpa & (PageWire.PAGE_SIZE - 1)) != 0 || pages < 0) {
            throw new IllegalArgumentException(String.format("bad page range 0x%x+%d", gpa, pages));
        }
        MemoryRegion r = memory.regionOf(gpa);
        if (gpa + (long) pages * PageWire.PAGE_SIZE > r.endGpa()) {
            throw new IllegalArgumentException(String.format("page range 0x%x+%d crosses the end of slot %d", gpa, pages,
                    r.slot()));
        }
        return r;
    }
}
