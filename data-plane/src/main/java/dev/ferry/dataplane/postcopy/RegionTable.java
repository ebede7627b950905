package dev.ferry.dataplane.postcopy;

import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import java.util.Arrays;
import java.util.Comparator;

/**
 * Region lookups without exceptions on the hot path: by guest-physical address, by host address of the region's
 * mapping (userfaultfd reports host addresses), and a dense page index over all regions (for per-page state).
 */
final class RegionTable {
    private final MemoryRegion[] regions;     // ascending guest-physical address
    private final long[] gpaStarts;
    private final long[] firstPage;           // page index of each region's first page
    private final int[] byHost;               // region indices in ascending host-address order
    private final long[] hostStarts;
    final long totalPages;

    RegionTable(GuestMemory memory) {
        regions = memory.regions().toArray(MemoryRegion[]::new);
        Arrays.sort(regions, Comparator.comparingLong(MemoryRegion::guestPhysAddr));
        gpaStarts = new long[regions.length];
        firstPage = new long[regions.length];
        long pages = 0;
        for (int i = 0; i < regions.length; i++) {
            gpaStarts[i] = regions[i].guestPhysAddr();
            firstPage[i] = pages;
            pages += regions[i].size() >>> PagerWire.PAGE_SHIFT;
        }
        totalPages = pages;
        Integer[] order = new Integer[regions.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, Comparator.comparingLong(i -> regions[i].mapping().address()));
        byHost = new int[regions.length];
        hostStarts = new long[regions.length];
        for (int i = 0; i < order.length; i++) {
            byHost[i] = order[i];
            hostStarts[i] = regions[order[i]].mapping().address();
        }
    }

    int count() {
        return regions.length;
    }

    MemoryRegion region(int i) {
        return regions[i];
    }

    /** Index of the region containing {@code gpa}, or -1. */
    int indexOfGpa(long gpa) {
        if (gpa < 0) {
            return -1;
        }
        int i = Arrays.binarySearch(gpaStarts, gpa);
        if (i < 0) {
            i = -i - 2;
        }
        return i >= 0 && gpa < regions[i].endGpa() ? i : -1;
    }

    /** The region containing {@code gpa}, or null. */
    MemoryRegion regionOfGpa(long gpa) {
        int i = indexOfGpa(gpa);
        return i < 0 ? null : regions[i];
    }

    /** Index of the region whose mapping contains host address {@code host}, or -1. */
    int indexOfHost(long host) {
        int i = Arrays.binarySearch(hostStarts, host);
        if (i < 0) {
            i = -i - 2;
        }
        if (i < 0) {
            return -1;
        }
        int r = byHost[i];
        return host - hostStarts[i] < regions[r].size() ? r : -1;
    }

    /** Dense index of the page at {@code gpa} in region {@code r}. */
    long pageIndex(int r, long gpa) {
        return firstPage[r] + ((gpa - gpaStarts[r]) >>> PagerWire.PAGE_SHIFT);
    }

    /** Dense page index of {@code gpa}, or -1 if outside memory. */
    long pageIndex(long gpa) {
        int r = indexOfGpa(gpa);
        return r < 0 ? -1 : pageIndex(r, gpa);
    }

    /** Guest-physical address of dense page index {@code index}. */
    long gpaOfIndex(long index) {
        int i = Arrays.binarySearch(firstPage, index);
        if (i < 0) {
            i = -i - 2;
        }
        return gpaStarts[i] + ((index - firstPage[i]) << PagerWire.PAGE_SHIFT);
    }

    /** True if {@code [gpa, gpa+len)} lies inside a single region. */
    boolean insideOneRegion(long gpa, long len) {
        MemoryRegion r = regionOfGpa(gpa);
        return r != null && len > 0 && len <= r.endGpa() - gpa;
    }
}
