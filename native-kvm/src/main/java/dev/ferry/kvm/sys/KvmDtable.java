package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_dtable} (asm/kvm.h): GDT/IDT base and limit. */
@FieldOrder({"base", "limit", "padding"})
public class KvmDtable extends NativeStruct {
    public long base;
    public short limit;
    public short[] padding = new short[3];

    public KvmDtable() {}

    public KvmDtable(Pointer p) {
        super(p);
        read();
    }
}
