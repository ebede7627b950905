package dev.ferry.dataplane;

/**
 * Where a round's pages come from: the streams of a {@link PageSender} pull pieces of consecutive pages from one
 * shared cursor until it is empty. {@link RoundCursor} walks a fixed set of dirty pages in address order; a caller
 * may supply its own order (postcopy's push re-aims at the guest's latest fault while the round runs).
 *
 * <p>Implementations must be thread-safe: every stream's worker calls {@link #next} concurrently.
 */
public interface PageCursor {
    /** The most pages one call may be asked for (also the most pieces one call may return). */
    int CHUNK_PAGES = 64;

    /**
     * Hands out up to {@code maxPages} pages (at most {@link #CHUNK_PAGES}) as pieces of consecutive pages
     * ({@code gpa[i]}, {@code pages[i]}), each page at most once per round. Returns the number of pieces, 0 when the
     * round has no pages left (and from then on). The arrays hold at least {@code maxPages} entries.
     */
    int next(int maxPages, long[] gpa, int[] pages);
}
