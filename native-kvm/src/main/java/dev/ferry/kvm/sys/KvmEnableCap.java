package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_enable_cap} (linux/kvm.h): for KVM_ENABLE_CAP on a VM or vCPU fd. */
@FieldOrder({"cap", "flags", "args", "pad"})
public class KvmEnableCap extends NativeStruct {
    /* in */
    public int cap;
    public int flags;
    public long[] args = new long[4];
    public byte[] pad = new byte[64];

    public KvmEnableCap() {}

    public KvmEnableCap(Pointer p) {
        super(p);
        read();
    }
}
