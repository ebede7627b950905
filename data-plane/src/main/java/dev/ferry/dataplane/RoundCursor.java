package dev.ferry.dataplane;

import dev.ferry.memory.PageRange;
import java.util.List;

/**
 * The pages of one round, handed out in chunks to whichever stream asks next. Sharing one cursor (rather than
 * splitting the round into N fixed parts up front) balances the streams: a stream that is slower gets fewer chunks.
 * Thread-safe; contended only once per chunk (at most {@link #CHUNK_PAGES} pages, small enough that batches fill to
 * exactly 256 data pages whatever the zero pages do).
 */
final class RoundCursor implements PageCursor {
    private final List<PageRange> ranges;
    // Guarded by this.
    private int range;
    private long offset; // pages of ranges[range] already handed out

    RoundCursor(List<PageRange> ranges) {
        this.ranges = ranges;
    }

    @Override
    public synchronized int next(int maxPages, long[] gpa, int[] pages) {
        int pieces = 0;
        int left = maxPages;
        while (left > 0 && range < ranges.size()) {
            PageRange r = ranges.get(range);
            int n = (int) Math.min(left, r.pages() - offset);
            gpa[pieces] = r.gpa() + offset * PageWire.PAGE_SIZE;
            pages[pieces] = n;
            pieces++;
            left -= n;
            offset += n;
            if (offset == r.pages()) {
                range++;
                offset = 0;
            }
        }
        return pieces;
    }
}
