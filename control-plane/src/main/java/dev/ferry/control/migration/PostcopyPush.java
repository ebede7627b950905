package dev.ferry.control.migration;

import dev.ferry.dataplane.PageCursor;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.PageRange;
import java.util.function.LongConsumer;
import java.util.function.LongSupplier;

/**
 * The order of postcopy's background push, as the cursor of one data-plane round: the streams pull the pages still to
 * send from here, so the push runs at the data plane's full rate with no pause between parts. Every pull first looks
 * at the destination's latest fault and, if there is a new one, moves on from it (a guest that touched one page will
 * soon touch its neighbours); otherwise it goes on in address order, wrapping around once the end is reached. A page
 * the pager served meanwhile is taken off the list ({@link #served}): the destination already has it. Plain code: no
 * I/O; thread-safe.
 */
final class PostcopyPush implements PageCursor {
    /** How often (in pages handed out) the progress listener hears of them: 8 MiB. */
    static final long PROGRESS_PAGES = 2048;

    private final GuestMemory memory;
    private final DirtyBitmap remaining; // guarded by this
    private final DirtyBitmap handedOut; // guarded by this
    private final LongSupplier latestFault;
    private final LongConsumer progress;
    private long cursor; // guarded by this: where the next pull starts
    private long unreported; // guarded by this: pages handed out since progress last heard

    /**
     * @param toSend      the pages to push (copied)
     * @param latestFault the address of the latest fault since the last call, or -1 when there was none
     * @param progress    told the number of pages handed out since it was last told, every {@link #PROGRESS_PAGES}
     *                    and at the end; called outside this object's lock
     */
    PostcopyPush(GuestMemory memory, DirtyBitmap toSend, LongSupplier latestFault, LongConsumer progress) {
        this.memory = memory;
        this.remaining = DirtyBitmap.empty(memory);
        this.remaining.or(toSend);
        this.handedOut = DirtyBitmap.empty(memory);
        this.latestFault = latestFault;
        this.progress = progress;
    }

    synchronized long remainingPages() {
        return remaining.count();
    }

    /** The pages handed out so far (a copy). */
    synchronized DirtyBitmap handedOut() {
        DirtyBitmap copy = DirtyBitmap.empty(memory);
        copy.or(handedOut);
        return copy;
    }

    /** The pager sent these pages to the destination: do not push them again. */
    synchronized void served(long gpa, long pages) {
        for (long i = 0; i < pages; i++) {
            remaining.clear(gpa + i * GuestMemory.PAGE_SIZE);
        }
    }

    @Override
    public int next(int maxPages, long[] gpa, int[] pages) {
        int pieces = 0;
        long report = 0;
        synchronized (this) {
            long fault = latestFault.getAsLong();
            if (fault >= 0) {
                cursor = fault & ~(GuestMemory.PAGE_SIZE - 1);
            }
            int left = maxPages;
            while (left > 0) {
                PageRange run = remaining.takeRun(cursor, left);
                if (run == null && cursor > 0) {
                    cursor = 0; // what is left lies below: wrap around
                    run = remaining.takeRun(0, left);
                }
                if (run == null) {
                    break;
                }
                handedOut.markRange(run.gpa(), run.pages());
                gpa[pieces] = run.gpa();
                pages[pieces] = (int) run.pages();
                pieces++;
                left -= (int) run.pages();
                cursor = run.endGpa();
            }
            unreported += maxPages - left;
            if (unreported >= PROGRESS_PAGES || (pieces == 0 && unreported > 0)) {
                report = unreported;
                unreported = 0;
            }
        }
        if (report > 0) {
            progress.accept(report);
        }
        return pieces;
    }
}
