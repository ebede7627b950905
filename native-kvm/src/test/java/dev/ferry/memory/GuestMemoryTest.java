package dev.ferry.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Guest memory without KVM: layout, populated extents, ranges and the digest. */
class GuestMemoryTest {
    static final long MIB = 1 << 20;

    @Test
    void layoutSplitsEvenlyAndRefusesOversizedSlots() {
        List<GuestMemory.RegionLayout> l = GuestMemory.layout(6 * MIB, 2);
        assertEquals(List.of(new GuestMemory.RegionLayout(0, 0, 4 * MIB), new GuestMemory.RegionLayout(1, 4 * MIB, 2 * MIB)), l);
        assertThrows(IllegalArgumentException.class, () -> GuestMemory.layout(2048 * MIB, 1));
        assertThrows(IllegalArgumentException.class, () -> GuestMemory.layout(3 * MIB, 1));
    }

    @Test
    void populatedPagesAreExactlyThePagesEverWritten() {
        try (GuestMemory m = GuestMemory.allocate(8 * MIB, 2)) {
            assertEquals(0, DirtyBitmap.populated(m).count(), "fresh memory is all holes");
            long[] written = {0, 4096 * 7, 4 * MIB - 4096, 4 * MIB, 8 * MIB - 4096};
            for (long gpa : written) {
                m.putLong(gpa + 8, 0x1234);
            }
            m.getLong(3 * MIB); // a read does not populate shared memory's page cache... or if it does, it is zero
            DirtyBitmap p = DirtyBitmap.populated(m);
            for (long gpa : written) {
                assertTrue(p.isDirty(gpa), "written page 0x" + Long.toHexString(gpa));
            }
            assertTrue(p.count() <= written.length + 1, "only written pages (and at most the one read) are data: " + p.count());
            List<Long> seen = new ArrayList<>();
            p.forEachDirtyPage(seen::add);
            assertEquals(p.count(), seen.size());
        }
    }

    @Test
    void anAliasSeesTheSameBytesWithoutTouchingTheGuestsMapping() {
        try (GuestMemory m = GuestMemory.allocate(8 * MIB, 2); GuestMemory alias = m.alias()) {
            assertEquals(m.regions().size(), alias.regions().size());
            assertNotEquals(m.base(), alias.base());
            long[] written = {0, 4096 * 63, 4 * MIB - 4096, 4 * MIB, 8 * MIB - 4096};
            for (long gpa : written) {
                alias.putLong(gpa + 16, gpa + 1);
            }
            DirtyBitmap p = DirtyBitmap.populated(m);
            assertEquals(written.length, p.count(), "the alias's writes are in the guest's memfds");
            for (long gpa : written) {
                assertEquals(gpa + 1, m.getLong(gpa + 16), "the guest's mapping sees the alias's write");
            }
        }
    }

    @Test
    void populatedFromAKnownSetFindsExactlyWhatAFullScanFinds() {
        try (GuestMemory m = GuestMemory.allocate(8 * MIB, 2)) {
            java.util.Random rnd = new java.util.Random(7);
            for (int i = 0; i < 300; i++) {
                m.putLong(rnd.nextLong(8 * MIB / 4096) * 4096, 1);
            }
            for (long gpa = MIB; gpa < 5 * MIB; gpa += 4096) { // one extent across the slot boundary
                m.putLong(gpa, 2);
            }
            DirtyBitmap known = DirtyBitmap.populated(m);
            assertEquals(known.count(), DirtyBitmap.populated(m, known).count(), "nothing new");
            long[] later = {0, 4096 * 63, 4096 * 64, MIB - 4096, 5 * MIB, 8 * MIB - 4096};
            for (long gpa : later) {
                m.putLong(gpa, 3);
            }
            DirtyBitmap full = DirtyBitmap.populated(m);
            DirtyBitmap delta = DirtyBitmap.populated(m, known);
            assertEquals(full.ranges(), delta.ranges());
            assertEquals(full.ranges(), DirtyBitmap.populated(m, DirtyBitmap.empty(m)).ranges());
            for (long gpa : later) {
                assertTrue(delta.isDirty(gpa), "written after known was taken: 0x" + Long.toHexString(gpa));
            }
        }
    }

    @Test
    void rangesMergeAdjacentPagesButNeverCrossSlots() {
        try (GuestMemory m = GuestMemory.allocate(4 * MIB, 2)) {
            DirtyBitmap d = DirtyBitmap.empty(m);
            for (long gpa = 2 * MIB - 3 * 4096; gpa < 2 * MIB + 2 * 4096; gpa += 4096) {
                d.markDirty(gpa);
            }
            d.markDirty(0);
            assertEquals(List.of(new PageRange(0, 1), new PageRange(2 * MIB - 3 * 4096, 3), new PageRange(2 * MIB, 2)),
                    d.ranges());
        }
    }

    @Test
    void digestIsZeroForZeroMemoryAndChangesWithOneByte() {
        try (GuestMemory m = GuestMemory.allocate(4 * MIB, 1)) {
            assertEquals(0, m.digest());
            m.putByte(12345, (byte) 1);
            long d1 = m.digest();
            assertNotEquals(0, d1);
            PageHashes h = new PageHashes(m);
            h.refresh(12288);
            assertEquals(d1, h.digest(), "the incremental digest of the one non-zero page equals the full one");
            m.putByte(12345, (byte) 0);
            assertEquals(0, m.digest());
        }
    }
}
