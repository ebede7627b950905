package dev.ferry.memory;

import dev.ferry.linux.MappedMemory;
import java.nio.ByteBuffer;

/**
 * One KVM memory slot: guest-physical range [guestPhysAddr, guestPhysAddr + size) backed by a
 * shared memfd mapping (so it can be registered with userfaultfd or mapped a second time).
 * {@code view} is a direct ByteBuffer over the whole mapping, for fast bulk access from Java.
 */
public record MemoryRegion(int slot, long guestPhysAddr, long size, MappedMemory mapping, ByteBuffer view) {
    /** Largest slot: a region must fit one direct ByteBuffer. */
    public static final long MAX_SIZE = 1L << 30;

    public MemoryRegion(int slot, long guestPhysAddr, long size, MappedMemory mapping) {
        this(slot, guestPhysAddr, size, mapping, mapping.buffer(0, checkSize(size)));
    }

    private static int checkSize(long size) {
        if (size > MAX_SIZE) {
            throw new IllegalArgumentException("a memory slot holds at most 1 GiB, got " + size);
        }
        return (int) size;
    }

    /**
     * A direct ByteBuffer over {@code length} bytes at {@code gpa} (no copy). Absolute reads on the
     * shared {@link #view()} are thread-safe; this returns an independent slice.
     */
    public ByteBuffer slice(long gpa, int length) {
        return view.slice((int) (gpa - guestPhysAddr), length);
    }

    public long pages() {
        return size / GuestMemory.PAGE_SIZE;
    }

    public long endGpa() {
        return guestPhysAddr + size;
    }

    public boolean contains(long gpa) {
        return gpa >= guestPhysAddr && gpa < endGpa();
    }

    /** Host virtual address of {@code gpa}, which must lie in this region. */
    public long hostAddress(long gpa) {
        return mapping.address() + (gpa - guestPhysAddr);
    }
}
