package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_msr_entry} (asm/kvm.h). See {@link KvmMsrs} for the variable-length list. */
@FieldOrder({"index", "reserved", "data"})
public class KvmMsrEntry extends NativeStruct {
    public int index;
    public int reserved;
    public long data;

    public KvmMsrEntry() {}

    public KvmMsrEntry(Pointer p) {
        super(p);
        read();
    }
}
