package dev.ferry.control.migration;

import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.PageRange;
import java.util.List;

/**
 * The order of postcopy's background push: chunks of the pages still to send, starting near the
 * destination's latest fault (a guest that touched one page will soon touch its neighbours), else
 * in address order. Plain code: no I/O.
 */
final class PostcopyPush {
    /** Pages per chunk: 8 MiB, enough to amortise a round's acknowledgement, small enough to re-aim often. */
    static final int CHUNK_PAGES = 2048;

    private final GuestMemory memory;
    private final DirtyBitmap remaining;
    private long cursor; // next address in address order

    PostcopyPush(GuestMemory memory, DirtyBitmap toSend) {
        this.memory = memory;
        this.remaining = DirtyBitmap.empty(memory);
        this.remaining.or(toSend);
    }

    long remainingPages() {
        return remaining.count();
    }

    /** The next chunk (removed from what remains), starting at or after {@code hint} if it is >= 0; null when done. */
    DirtyBitmap next(long hint) {
        List<PageRange> ranges = remaining.ranges();
        if (ranges.isEmpty()) {
            return null;
        }
        long start = hint >= 0 ? hint & ~(GuestMemory.PAGE_SIZE - 1) : cursor;
        int first = 0;
        while (first < ranges.size() && ranges.get(first).endGpa() <= start) {
            first++;
        }
        if (first == ranges.size()) {
            first = 0; // wrap around: what is left lies below the start
            start = 0;
        }
        DirtyBitmap chunk = DirtyBitmap.empty(memory);
        int taken = 0;
        for (int i = first; i < ranges.size() && taken < CHUNK_PAGES; i++) {
            PageRange r = ranges.get(i);
            for (long gpa = Math.max(r.gpa(), start); gpa < r.endGpa() && taken < CHUNK_PAGES; gpa += GuestMemory.PAGE_SIZE) {
                chunk.markDirty(gpa);
                remaining.clear(gpa);
                taken++;
                cursor = gpa + GuestMemory.PAGE_SIZE;
            }
        }
        return chunk;
    }
}
