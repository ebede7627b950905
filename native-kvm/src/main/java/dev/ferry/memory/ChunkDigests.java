package dev.ferry.memory;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * {@link PageHashes}-style digests of guest memory per chunk of {@code chunkPages} consecutive pages (page index =
 * guest-physical address / 4096), leaving out a set of pages. Two copies of a guest compare these instead of one
 * digest each: a mismatch then names where, and for a 1 GiB guest 512 chunks of 2 MiB take 4 KiB to send where
 * per-page hashes would take 2 MiB.
 *
 * @param chunkPages pages per chunk, a power of two
 * @param sums       one digest per chunk, in guest-physical order
 */
public record ChunkDigests(int chunkPages, long[] sums) {
    /** 2 MiB chunks. */
    public static final int DEFAULT_CHUNK_PAGES = 512;

    public ChunkDigests {
        if (chunkPages < 1 || Integer.bitCount(chunkPages) != 1) {
            throw new IllegalArgumentException("chunk_pages must be a power of two, not " + chunkPages);
        }
        sums = sums.clone();
    }

    /** How many chunks {@code pages} pages make. */
    public static int chunkCount(long pages, int chunkPages) {
        return (int) ((pages + chunkPages - 1) / chunkPages);
    }

    /** The chunk digests of the page hashes in {@code hashes}, without the pages in {@code excluded}. */
    public static ChunkDigests of(PageHashes hashes, DirtyBitmap excluded, int chunkPages) {
        long[] sums = new long[chunkCount(hashes.pageCount(), chunkPages)];
        for (int i = 0; i < hashes.pageCount(); i++) {
            sums[i / chunkPages] += hashes.get((long) i * GuestMemory.PAGE_SIZE);
        }
        excluded.forEachDirtyPage(gpa -> sums[(int) (gpa / GuestMemory.PAGE_SIZE / chunkPages)] -= hashes.get(gpa));
        return new ChunkDigests(chunkPages, sums);
    }

    @Override
    public long[] sums() {
        return sums.clone();
    }

    /** The indices of the chunks whose digests differ from {@code other}'s (every chunk if the shapes differ). */
    public List<Integer> differing(ChunkDigests other) {
        List<Integer> out = new ArrayList<>();
        int n = Math.max(sums.length, other.sums.length);
        boolean sameShape = chunkPages == other.chunkPages && sums.length == other.sums.length;
        for (int i = 0; i < n; i++) {
            if (!sameShape || sums[i] != other.sums[i]) {
                out.add(i);
            }
        }
        return out;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof ChunkDigests c && c.chunkPages == chunkPages && Arrays.equals(c.sums, sums);
    }

    @Override
    public int hashCode() {
        return 31 * chunkPages + Arrays.hashCode(sums);
    }

    @Override
    public String toString() {
        return "ChunkDigests[" + sums.length + " chunks of " + chunkPages + " pages]";
    }
}
