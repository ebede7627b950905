package dev.ferry.memory;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** {@link DirtyBitmap#markRange}: the same bits as page-by-page markDirty, and clear refusals. */
class DirtyBitmapMarkRangeTest {
    static final long MIB = 1 << 20;
    static final long PAGE = GuestMemory.PAGE_SIZE;

    private GuestMemory memory;

    @BeforeEach
    void setUp() {
        // 6 MiB in 2 slots: 4 MiB (1024 pages) + 2 MiB (512 pages)
        memory = GuestMemory.allocate(6 * MIB, 2);
    }

    @AfterEach
    void tearDown() {
        memory.close();
    }

    @Test
    void markRangeSetsTheSameBitsAsMarkDirty() {
        Random rnd = new Random(11);
        for (int trial = 0; trial < 2000; trial++) {
            MemoryRegion r = memory.regions().get(rnd.nextInt(2));
            long first = rnd.nextInt((int) r.pages());
            long count = trial % 10 == 0 ? r.pages() - first : rnd.nextInt((int) Math.min(200, r.pages() - first) + 1);
            DirtyBitmap fast = DirtyBitmap.empty(memory);
            DirtyBitmap slow = DirtyBitmap.empty(memory);
            long gpa = r.guestPhysAddr() + first * PAGE;
            fast.markRange(gpa, count);
            for (long p = 0; p < count; p++) {
                slow.markDirty(gpa + p * PAGE);
            }
            for (int i = 0; i < 2; i++) {
                assertArrayEquals(slow.words(i), fast.words(i), "region " + i + " after markRange(0x"
                        + Long.toHexString(gpa) + ", " + count + ")");
            }
        }
    }

    @Test
    void markRangeAtWordBoundariesAndWholeRegions() {
        DirtyBitmap d = DirtyBitmap.empty(memory);
        d.markRange(63 * PAGE, 2); // bits 63 and 64: across a word boundary
        assertEquals(2, d.count());
        d.markRange(128 * PAGE, 64); // exactly word 2
        assertEquals(-1L, d.words(0)[2]);
        assertEquals(0L, d.words(0)[3]);
        d.markRange(4 * MIB, 512); // all of region 1
        assertEquals(2 + 64 + 512, d.count());
        d.markRange(0, 0); // empty range: nothing
        d.markRange(0, 1024); // all of region 0, overlapping what is set
        assertEquals(1024 + 512, d.count());
        assertEquals(DirtyBitmap.full(memory).count(), d.count());
    }

    @Test
    void markRangeRefusesBadRanges() {
        DirtyBitmap d = DirtyBitmap.empty(memory);
        IllegalArgumentException past = assertThrows(IllegalArgumentException.class, () -> d.markRange(4 * MIB - PAGE, 2));
        assertEquals("range 0x3ff000 + 2 pages runs past the end of slot 0 (0x400000)", past.getMessage());
        assertThrows(IllegalArgumentException.class, () -> d.markRange(6 * MIB, 1), "outside guest memory");
        assertThrows(IllegalArgumentException.class, () -> d.markRange(PAGE + 8, 1), "unaligned");
        assertThrows(IllegalArgumentException.class, () -> d.markRange(0, -1), "negative count");
        assertEquals(0, d.count(), "a refused range marks nothing");
    }
}
