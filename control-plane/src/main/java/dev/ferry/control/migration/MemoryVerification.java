package dev.ferry.control.migration;

/**
 * What one comparison of the destination's memory with the paused source's found (VerifyIncomingMigration):
 * the pages the destination's guest had not written since it resumed, compared chunk by chunk.
 *
 * @param pagesCompared          pages covered by the comparison
 * @param pagesWrittenAfterResume pages the guest wrote on the destination, left out
 * @param chunks                 chunks compared
 * @param chunksDiffering        chunks whose digests differed; 0 means every compared page matched
 */
public record MemoryVerification(long pagesCompared, long pagesWrittenAfterResume, int chunks, int chunksDiffering) {
    public MemoryVerification {
        if (pagesCompared < 0 || pagesWrittenAfterResume < 0 || chunks < 0 || chunksDiffering < 0
                || chunksDiffering > chunks) {
            throw new IllegalArgumentException("inconsistent verification: " + pagesCompared + " pages, "
                    + pagesWrittenAfterResume + " written, " + chunksDiffering + " of " + chunks + " chunks differ");
        }
    }

    public boolean matched() {
        return chunksDiffering == 0;
    }
}
