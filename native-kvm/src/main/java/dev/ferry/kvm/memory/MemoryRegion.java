package dev.ferry.kvm.memory;

import dev.ferry.kvm.sys.MappedMemory;

/**
 * One KVM memory slot: guest-physical range [guestPhysAddr, guestPhysAddr + size) backed by a
 * shared memfd mapping (so it can be registered with userfaultfd or mapped a second time).
 */
public record MemoryRegion(int slot, long guestPhysAddr, long size, MappedMemory mapping) {

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
