package dev.ferry.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** Per-chunk digests: equal copies agree, a changed page names its chunk, excluded pages never count. */
class ChunkDigestsTest {
    static final long MIB = 1 << 20;

    private static PageHashes hashed(GuestMemory m) {
        PageHashes h = new PageHashes(m);
        h.refreshAll();
        return h;
    }

    @Test
    void aChangedPageShowsInItsChunkOnlyUnlessExcluded() {
        try (GuestMemory a = GuestMemory.allocate(8 * MIB, 2); GuestMemory b = GuestMemory.allocate(8 * MIB, 2)) {
            for (long gpa = 0; gpa < 8 * MIB; gpa += 3 * 4096) {
                a.putLong(gpa, gpa + 1);
                b.putLong(gpa, gpa + 1);
            }
            DirtyBitmap none = DirtyBitmap.empty(a);
            ChunkDigests da = ChunkDigests.of(hashed(a), none, 512);
            assertEquals(4, da.sums().length, "8 MiB in 2 MiB chunks");
            assertEquals(da, ChunkDigests.of(hashed(b), none, 512));

            long changed = 5 * MIB + 4096 * 3; // chunk 2
            b.putLong(changed + 16, 42);
            assertEquals(List.of(2), da.differing(ChunkDigests.of(hashed(b), none, 512)));

            DirtyBitmap written = DirtyBitmap.empty(a);
            written.markDirty(changed);
            assertEquals(List.of(), ChunkDigests.of(hashed(a), written, 512)
                    .differing(ChunkDigests.of(hashed(b), written, 512)), "an excluded page is not compared");
            assertEquals(8, da.differing(ChunkDigests.of(hashed(b), none, 256)).size(),
                    "chunks of another size are not comparable: every chunk counts as differing");
        }
    }

    @Test
    void chunkSizeMustBeAPowerOfTwo() {
        assertThrows(IllegalArgumentException.class, () -> new ChunkDigests(3, new long[1]));
        assertThrows(IllegalArgumentException.class, () -> new ChunkDigests(0, new long[1]));
        assertTrue(new ChunkDigests(1, new long[0]).differing(new ChunkDigests(1, new long[0])).isEmpty());
    }
}
