package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_mp_state} (linux/kvm.h): KVM_MP_STATE_* for KVM_GET/SET_MP_STATE. */
@FieldOrder({"mp_state"})
public class KvmMpState extends NativeStruct {
    public int mp_state;

    public KvmMpState() {}

    public KvmMpState(int mpState) {
        this.mp_state = mpState;
    }

    public KvmMpState(Pointer p) {
        super(p);
        read();
    }
}
