package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/**
 * {@code struct kvm_xsave} (asm/kvm.h), fixed part: {@code __u32 region[1024]}, the 4096 bytes
 * KVM_GET_XSAVE / KVM_SET_XSAVE transfer. Newer headers add a flexible {@code extra[]} used only
 * by KVM_GET_XSAVE2 (size from KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) on the VM fd) when dynamic
 * xfeatures such as AMX were enabled; it is not part of this structure.
 */
@FieldOrder({"region"})
public class KvmXsave extends NativeStruct {
    public int[] region = new int[1024];

    public KvmXsave() {}

    public KvmXsave(Pointer p) {
        super(p);
        read();
    }
}
