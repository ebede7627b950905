package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_xcr} (asm/kvm.h). */
@FieldOrder({"xcr", "reserved", "value"})
public class KvmXcr extends NativeStruct {
    public int xcr;
    public int reserved;
    public long value;

    public KvmXcr() {}

    public KvmXcr(Pointer p) {
        super(p);
        read();
    }
}
