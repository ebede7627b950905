package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** Push order: every page exactly once, near the latest fault first, in chunks. */
class PostcopyPushTest {
    static final long MIB = 1 << 20;

    @Test
    void everyPageOnceInChunksStartingAtTheHint() {
        try (GuestMemory m = GuestMemory.allocate(32 * MIB, 2)) {
            DirtyBitmap all = DirtyBitmap.full(m);
            PostcopyPush push = new PostcopyPush(m, all);
            Set<Long> seen = new HashSet<>();
            long hint = 20 * MIB + 12345;
            DirtyBitmap first = push.next(hint);
            assertTrue(first.isDirty(20 * MIB + 12288), "the chunk starts at the faulting page");
            assertTrue(!first.isDirty(20 * MIB), "nothing before the hint");
            assertEquals(PostcopyPush.CHUNK_PAGES, first.count());
            first.forEachDirtyPage(seen::add);
            DirtyBitmap c;
            while ((c = push.next(-1)) != null) {
                assertTrue(c.count() <= PostcopyPush.CHUNK_PAGES);
                c.forEachDirtyPage(gpa -> assertTrue(seen.add(gpa), "page 0x" + Long.toHexString(gpa) + " twice"));
            }
            assertEquals(m.totalPages(), seen.size());
            assertNull(push.next(0));
        }
    }

    @Test
    void aHintPastEverythingLeftWrapsAround() {
        try (GuestMemory m = GuestMemory.allocate(4 * MIB, 1)) {
            DirtyBitmap some = DirtyBitmap.empty(m);
            some.markDirty(4096);
            some.markDirty(8192);
            PostcopyPush push = new PostcopyPush(m, some);
            DirtyBitmap c = push.next(3 * MIB);
            assertEquals(2, c.count());
            assertEquals(0, push.remainingPages());
        }
    }
}
