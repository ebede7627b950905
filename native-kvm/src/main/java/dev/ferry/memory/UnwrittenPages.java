package dev.ferry.memory;



/**
 * The digest of the pages a running guest has not written since its dirty log was enabled. On a
 * migration destination those pages must still hold exactly what the paused source holds, so the two
 * sides can compare digests while the guest keeps running.
 *
 * @param written the pages the guest wrote (read after the hashing: a page written meanwhile, even in
 *                the middle of being hashed, is among them)
 * @param digest  {@link PageHashes}-style digest of every other page, as it was when hashed
 */
public record UnwrittenPages(DirtyBitmap written, long digest) {

    /** Hashes every populated page not yet reported by {@code log}, then reads the log again. */
    public static UnwrittenPages of(GuestMemory memory, DirtyTracker log) {
        DirtyBitmap toHash = DirtyBitmap.populated(memory); // holes are zero: they count 0 on both sides
        toHash.andNot(log.fetch());
        PageHashes now = new PageHashes(memory);
        toHash.forEachDirtyPage(now::refresh);
        DirtyBitmap written = log.fetch();
        return new UnwrittenPages(written, now.digestExcept(written));
    }

    /** Whether {@code other}, the page hashes of the copy the guest came from, agrees on the unwritten pages. */
    public boolean matches(PageHashes other) {
        return other.digestExcept(written) == digest;
    }
}
