package dev.ferry.memory;

import com.sun.jna.Pointer;
import dev.ferry.linux.MappedMemory;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Guest RAM: contiguous guest-physical memory from 0, split into one or more memory slots, each
 * backed by its own memfd. The slots are mapped back to back, so guest-physical address g is host
 * address {@link #base()} + g (a process guest computes its pointers that way). All access from the
 * VMM goes through here.
 */
public final class GuestMemory implements AutoCloseable {
    public static final long PAGE_SIZE = 4096;
    /** Slots are sized in whole 2 MiB pages so the guest can map them with large pages. */
    public static final long SLOT_ALIGN = 2L << 20;

    private final List<MemoryRegion> regions;
    private final long totalBytes;

    private GuestMemory(List<MemoryRegion> regions) {
        this.regions = Collections.unmodifiableList(regions);
        this.totalBytes = regions.stream().mapToLong(MemoryRegion::size).sum();
    }

    /** Splits {@code totalBytes} into {@code slots} regions of (nearly) equal 2 MiB-aligned size. */
    public static GuestMemory allocate(long totalBytes, int slots) {
        return allocate(layout(totalBytes, slots));
    }

    /**
     * Allocates exactly the given layout (slot, guest-physical base, size per region), which must be
     * contiguous from 0, in one reserved host range.
     */
    public static GuestMemory allocate(List<RegionLayout> layout) {
        long total = 0;
        for (RegionLayout l : layout) {
            if (l.guestPhysAddr() != total || l.size() <= 0) {
                throw new IllegalArgumentException("memory regions must be contiguous from 0: " + layout);
            }
            total += l.size();
        }
        long base = MappedMemory.reserve(total);
        List<MemoryRegion> regions = new ArrayList<>();
        try {
            for (RegionLayout l : layout) {
                MappedMemory m = MappedMemory.createSharedAt("ferry-guest-slot" + l.slot(), l.size(),
                        base + l.guestPhysAddr());
                regions.add(new MemoryRegion(l.slot(), l.guestPhysAddr(), l.size(), m));
            }
        } catch (RuntimeException e) {
            regions.forEach(r -> r.mapping().close()); // each unmaps its part of the reservation
            long mapped = regions.stream().mapToLong(MemoryRegion::size).sum();
            MappedMemory.unmap(base + mapped, total - mapped);
            throw e;
        }
        return new GuestMemory(regions);
    }

    /**
     * A second view of the same memory: every region's memfd mapped again, back to back in a range of its own. Writes
     * through it land in the same pages without touching the guest's page tables, so they never trip a userfaultfd
     * registered on the guest's mappings (the destination fills memory this way while postcopy's trap is armed).
     * Closing the view unmaps it only; the memory stays.
     */
    public GuestMemory alias() {
        long base = MappedMemory.reserve(totalBytes);
        List<MemoryRegion> aliased = new ArrayList<>();
        try {
            for (MemoryRegion r : regions) {
                MappedMemory m = MappedMemory.mapFdAt(r.mapping().fd(), r.size(), base + r.guestPhysAddr());
                aliased.add(new MemoryRegion(r.slot(), r.guestPhysAddr(), r.size(), m));
            }
        } catch (RuntimeException e) {
            aliased.forEach(r -> r.mapping().close());
            long mapped = aliased.stream().mapToLong(MemoryRegion::size).sum();
            MappedMemory.unmap(base + mapped, totalBytes - mapped);
            throw e;
        }
        return new GuestMemory(aliased);
    }

    /** Host address of guest-physical address 0; the regions follow it without gaps. */
    public long base() {
        return regions.get(0).mapping().address() - regions.get(0).guestPhysAddr();
    }

    /** Slot, guest-physical base and size of one region, without its backing. */
    public record RegionLayout(int slot, long guestPhysAddr, long size) {}

    /** Splits {@code totalBytes} into {@code slots} slots of at most 1 GiB each, 2 MiB aligned. */
    public static List<RegionLayout> layout(long totalBytes, int slots) {
        if (totalBytes <= 0 || totalBytes % SLOT_ALIGN != 0) {
            throw new IllegalArgumentException("memory size must be a positive multiple of 2 MiB, got " + totalBytes);
        }
        long units = totalBytes / SLOT_ALIGN;
        if (slots < 1 || slots > units) {
            throw new IllegalArgumentException("slot count must be within 1.." + units + ", got " + slots);
        }
        if ((units + slots - 1) / slots * SLOT_ALIGN > MemoryRegion.MAX_SIZE) {
            throw new IllegalArgumentException("each memory slot holds at most 1 GiB: use at least "
                    + (totalBytes + MemoryRegion.MAX_SIZE - 1) / MemoryRegion.MAX_SIZE + " slots for " + totalBytes + " bytes");
        }
        List<RegionLayout> out = new ArrayList<>();
        long gpa = 0;
        for (int i = 0; i < slots; i++) {
            long size = (units / slots + (i < units % slots ? 1 : 0)) * SLOT_ALIGN;
            out.add(new RegionLayout(i, gpa, size));
            gpa += size;
        }
        return out;
    }

    public List<MemoryRegion> regions() {
        return regions;
    }

    public long totalBytes() {
        return totalBytes;
    }

    public long totalPages() {
        return totalBytes / PAGE_SIZE;
    }

    public MemoryRegion regionOf(long gpa) {
        for (MemoryRegion r : regions) {
            if (r.contains(gpa)) {
                return r;
            }
        }
        throw new IllegalArgumentException(String.format("guest-physical address 0x%x is outside guest memory", gpa));
    }

    /** A pointer to {@code length} bytes at {@code gpa}; the range must not cross a slot boundary. */
    public Pointer pointer(long gpa, long length) {
        MemoryRegion r = regionOf(gpa);
        if (gpa + length > r.endGpa()) {
            throw new IllegalArgumentException(String.format("range 0x%x+%d crosses slot %d", gpa, length, r.slot()));
        }
        return new Pointer(r.hostAddress(gpa));
    }

    /** A direct ByteBuffer view of {@code length} bytes at {@code gpa} (no copy). */
    public ByteBuffer buffer(long gpa, int length) {
        MemoryRegion r = regionOf(gpa);
        if (gpa + length > r.endGpa()) {
            throw new IllegalArgumentException(String.format("range 0x%x+%d crosses slot %d", gpa, length, r.slot()));
        }
        return r.slice(gpa, length);
    }

    public long getLong(long gpa) {
        return pointer(gpa, 8).getLong(0);
    }

    public void putLong(long gpa, long value) {
        pointer(gpa, 8).setLong(0, value);
    }

    public int getInt(long gpa) {
        return pointer(gpa, 4).getInt(0);
    }

    public void putInt(long gpa, int value) {
        pointer(gpa, 4).setInt(0, value);
    }

    public void putShort(long gpa, short value) {
        pointer(gpa, 2).setShort(0, value);
    }

    public void putByte(long gpa, byte value) {
        pointer(gpa, 1).setByte(0, value);
    }

    public void write(long gpa, byte[] data) {
        pointer(gpa, data.length).write(0, data, 0, data.length);
    }

    public byte[] read(long gpa, int length) {
        return pointer(gpa, length).getByteArray(0, length);
    }

    /** Ferry's memory digest of all guest memory as it is now (see {@link PageHashes}). */
    public long digest() {
        return PageHashes.digestOf(this);
    }

    @Override
    public void close() {
        for (MemoryRegion r : regions) {
            r.mapping().close();
        }
    }
}
