package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/**
 * {@code struct kvm_dirty_log} (linux/kvm.h): for KVM_GET_DIRTY_LOG. The bitmap has one bit per
 * page of the slot, rounded up to a multiple of 64 bits.
 */
@FieldOrder({"slot", "padding1", "dirty_bitmap"})
public class KvmDirtyLog extends NativeStruct {
    public int slot;
    public int padding1;
    /** union { void *dirty_bitmap; __u64 padding2; }: one bit per page */
    public Pointer dirty_bitmap;

    public KvmDirtyLog() {}

    public KvmDirtyLog(Pointer p) {
        super(p);
        read();
    }
}
