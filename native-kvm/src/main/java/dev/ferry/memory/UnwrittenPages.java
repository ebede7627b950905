package dev.ferry.memory;

/**
 * The pages a running guest has not written since its dirty log was enabled, hashed. On a migration
 * destination those pages must still hold exactly what the paused source holds, so the two sides can
 * compare digests (whole, or per chunk) while the guest keeps running.
 *
 * @param written the pages the guest wrote (read after the hashing: a page written meanwhile, even in
 *                the middle of being hashed, is among them)
 * @param hashes  every other page's hash, as the page was when hashed (holes count 0); the written pages'
 *                entries mean nothing
 */
public record UnwrittenPages(DirtyBitmap written, PageHashes hashes) {

    /** Hashes every populated page not yet reported by {@code log}, then reads the log again. */
    public static UnwrittenPages of(GuestMemory memory, DirtyTracker log) {
        DirtyBitmap toHash = DirtyBitmap.populated(memory); // holes are zero: they count 0 on both sides
        toHash.andNot(log.fetch());
        PageHashes now = new PageHashes(memory);
        toHash.forEachDirtyPage(now::refresh);
        DirtyBitmap written = log.fetch();
        return new UnwrittenPages(written, now);
    }

    /** {@link PageHashes}-style digest of every page not written. */
    public long digest() {
        return hashes.digestExcept(written);
    }

    /** {@link ChunkDigests} of every page not written. */
    public ChunkDigests chunks(int chunkPages) {
        return ChunkDigests.of(hashes, written, chunkPages);
    }

    /** Pages compared: every page not written. */
    public long pagesCompared() {
        return hashes.pageCount() - written.count();
    }

    /** Whether {@code other}, the page hashes of the copy the guest came from, agrees on the unwritten pages. */
    public boolean matches(PageHashes other) {
        return other.digestExcept(written) == digest();
    }
}
