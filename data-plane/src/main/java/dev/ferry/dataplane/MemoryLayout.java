package dev.ferry.dataplane;

import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import java.util.Arrays;
import java.util.Comparator;

/**
 * Region lookup for one GuestMemory without exceptions on the hot path: bounds checks of incoming ranges, and
 * splitting a range at region boundaries (regions are separate mappings, so a copy never crosses one).
 */
final class MemoryLayout {
    private final MemoryRegion[] regions;
    private final long[] starts;

    MemoryLayout(GuestMemory memory) {
        regions = memory.regions().toArray(MemoryRegion[]::new);
        Arrays.sort(regions, Comparator.comparingLong(MemoryRegion::guestPhysAddr));
        starts = new long[regions.length];
        for (int i = 0; i < regions.length; i++) {
            starts[i] = regions[i].guestPhysAddr();
        }
    }

    /** The region containing {@code gpa}, or null. */
    MemoryRegion regionAt(long gpa) {
        int i = indexAt(gpa);
        return i < 0 ? null : regions[i];
    }

    /** Index (in ascending address order) of the region containing {@code gpa}, or -1. */
    int indexAt(long gpa) {
        if (gpa < 0) {
            return -1;
        }
        int i = Arrays.binarySearch(starts, gpa);
        if (i < 0) {
            i = -i - 2;
        }
        return i >= 0 && gpa < regions[i].endGpa() ? i : -1;
    }

    MemoryRegion region(int index) {
        return regions[index];
    }

    int regionCount() {
        return regions.length;
    }

    /**
     * Why the range of {@code pages} pages at {@code gpa} (both unsigned, as read from the wire) is not valid guest
     * memory, or null when it is: aligned, at least one page, every page inside some region.
     */
    String checkRange(long gpa, long pages) {
        if (gpa < 0 || (gpa & (PageWire.PAGE_SIZE - 1)) != 0) {
            return String.format("guest_physical_address 0x%x is not 4096-aligned", gpa);
        }
        if (pages <= 0) {
            return String.format("page range at 0x%x has page_count %d (at least 1)", gpa, pages);
        }
        long end = gpa + (pages << PageWire.PAGE_SHIFT);
        if (pages > (Long.MAX_VALUE >> PageWire.PAGE_SHIFT) || end < gpa) {
            return String.format("page range 0x%x+%d pages overflows", gpa, pages);
        }
        long cur = gpa;
        while (cur < end) {
            MemoryRegion r = regionAt(cur);
            if (r == null) {
                return String.format("page range 0x%x+%d pages: page 0x%x is outside guest memory", gpa, pages, cur);
            }
            cur = Math.min(end, r.endGpa());
        }
        return null;
    }

    /** Pages from {@code gpa} to the end of its region, at most {@code max}; {@code gpa} must be valid. */
    long pagesInRegion(long gpa, long max) {
        MemoryRegion r = regionAt(gpa);
        return Math.min(max, (r.endGpa() - gpa) >>> PageWire.PAGE_SHIFT);
    }

    boolean sameRegion(long a, long b) {
        MemoryRegion r = regionAt(a);
        return r != null && r.contains(b);
    }
}
