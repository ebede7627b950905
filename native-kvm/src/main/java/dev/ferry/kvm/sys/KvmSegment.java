package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_segment} (asm/kvm.h). */
@FieldOrder({"base", "limit", "selector", "type", "present", "dpl", "db", "s", "l", "g", "avl",
        "unusable", "padding"})
public class KvmSegment extends NativeStruct {
    public long base;
    public int limit;
    public short selector;
    public byte type;
    public byte present, dpl, db, s, l, g, avl;
    public byte unusable;
    public byte padding;

    public KvmSegment() {}

    public KvmSegment(Pointer p) {
        super(p);
        read();
    }
}
