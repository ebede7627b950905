package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_userspace_memory_region} (linux/kvm.h): for KVM_SET_USER_MEMORY_REGION. */
@FieldOrder({"slot", "flags", "guest_phys_addr", "memory_size", "userspace_addr"})
public class KvmUserspaceMemoryRegion extends NativeStruct {
    public int slot;
    public int flags;
    public long guest_phys_addr;
    public long memory_size; /* bytes */
    public long userspace_addr; /* start of the userspace allocated memory */

    public KvmUserspaceMemoryRegion() {}

    public KvmUserspaceMemoryRegion(Pointer p) {
        super(p);
        read();
    }
}
