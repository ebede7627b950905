package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/**
 * {@code struct kvm_clear_dirty_log} (linux/kvm.h): for KVM_CLEAR_DIRTY_LOG. first_page must be a
 * multiple of 64; num_pages too unless the range ends at the end of the slot. Bit 0 of the bitmap
 * is first_page.
 */
@FieldOrder({"slot", "num_pages", "first_page", "dirty_bitmap"})
public class KvmClearDirtyLog extends NativeStruct {
    public int slot;
    public int num_pages;
    public long first_page;
    /** union { void *dirty_bitmap; __u64 padding2; }: one bit per page */
    public Pointer dirty_bitmap;

    public KvmClearDirtyLog() {}

    public KvmClearDirtyLog(Pointer p) {
        super(p);
        read();
    }
}
