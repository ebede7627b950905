package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_xcrs} (asm/kvm.h): for KVM_GET_XCRS and KVM_SET_XCRS. */
@FieldOrder({"nr_xcrs", "flags", "xcrs", "padding"})
public class KvmXcrs extends NativeStruct {
    public static final int KVM_MAX_XCRS = 16;

    public int nr_xcrs;
    public int flags;
    public KvmXcr[] xcrs = newXcrs();
    public long[] padding = new long[16];

    public KvmXcrs() {}

    public KvmXcrs(Pointer p) {
        super(p);
        read();
    }

    private static KvmXcr[] newXcrs() {
        KvmXcr[] a = new KvmXcr[KVM_MAX_XCRS];
        for (int i = 0; i < a.length; i++) {
            a[i] = new KvmXcr();
        }
        return a;
    }
}
