package dev.ferry.dataplane;

import dev.ferry.memory.PageHashes;
import java.nio.ByteBuffer;

/**
 * Builds one stream's batches of one round from the round's shared {@link PageCursor}: pulls chunks, sorts their pages
 * into data runs and zero ranges (a page that is all zero now is sent as a zero range and its hash set to 0), and
 * cuts a batch at 256 data pages (1 MiB), 512 ranges or 16384 pages. The last batch, when the cursor is empty, carries
 * end_of_round (and may carry no pages). Not thread-safe: used by one stream worker.
 */
final class StreamPlanner {
    private final MemoryLayout layout;
    private final MemoryFence fence;
    private final PageCursor cursor;
    private final OutgoingBatch.Builder builder;
    private final ByteBuffer[] views; // one duplicate per region: position/limit are ours
    private final long[] pieceGpa = new long[PageCursor.CHUNK_PAGES];
    private final int[] piecePages = new int[PageCursor.CHUNK_PAGES];
    private boolean ended;
    private final boolean zeroPageElision; // else zero pages go as data, as a peer without the feature expects

    StreamPlanner(MemoryLayout layout, PageHashes hashes, MemoryFence fence, PageCursor cursor, int streamIndex,
            int round, boolean zeroPageElision) {
        this.zeroPageElision = zeroPageElision;
        this.layout = layout;
        this.fence = fence;
        this.cursor = cursor;
        this.builder = new OutgoingBatch.Builder(layout, hashes, fence, streamIndex, round);
        this.views = new ByteBuffer[layout.regionCount()];
        for (int i = 0; i < views.length; i++) {
            views[i] = layout.region(i).view().duplicate();
        }
    }

    /**
     * The next batch of this stream, or null once the end_of_round batch has been returned.
     *
     * @throws IllegalStateException when the sender was closed (memory may no longer be read)
     */
    OutgoingBatch next() {
        if (ended) {
            return null;
        }
        while (builder.dataPages() < PageWire.MAX_DATA_PAGES_PER_BATCH
                && builder.rangeCount() <= PageWire.MAX_RANGES_PER_BATCH - PageCursor.CHUNK_PAGES
                && builder.totalPages() < PageWire.MAX_PAGES_PER_BATCH) {
            int want = (int) Math.min(PageCursor.CHUNK_PAGES, Math.min(
                    PageWire.MAX_DATA_PAGES_PER_BATCH - builder.dataPages(),
                    PageWire.MAX_PAGES_PER_BATCH - builder.totalPages()));
            int pieces = cursor.next(want, pieceGpa, piecePages);
            if (pieces == 0) {
                ended = true;
                return builder.build(true);
            }
            if (!fence.enter()) {
                throw new IllegalStateException("page sender closed: guest memory may no longer be read");
            }
            try {
                scan(pieces);
            } finally {
                fence.exit();
            }
        }
        return builder.build(false);
    }

    /** Sorts the pages of the chunk just taken into data pages and zero pages. */
    private void scan(int pieces) {
        for (int p = 0; p < pieces; p++) {
            for (int i = 0; i < piecePages[p]; i++) {
                long gpa = pieceGpa[p] + (long) i * PageWire.PAGE_SIZE;
                int ri = layout.indexAt(gpa);
                ByteBuffer v = views[ri];
                int off = (int) (gpa - layout.region(ri).guestPhysAddr());
                v.clear().position(off).limit(off + PageWire.PAGE_SIZE);
                if (zeroPageElision && PageHashes.isZero(v)) {
                    builder.addZeroPage(gpa);
                } else {
                    builder.addDataPage(gpa);
                }
            }
        }
    }
}
