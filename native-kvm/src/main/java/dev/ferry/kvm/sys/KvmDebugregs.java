package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_debugregs} (asm/kvm.h): for KVM_GET/SET_DEBUGREGS. */
@FieldOrder({"db", "dr6", "dr7", "flags", "reserved"})
public class KvmDebugregs extends NativeStruct {
    public long[] db = new long[4];
    public long dr6;
    public long dr7;
    public long flags;
    public long[] reserved = new long[9];

    public KvmDebugregs() {}

    public KvmDebugregs(Pointer p) {
        super(p);
        read();
    }
}
