package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_pit_state2} (asm/kvm.h): for KVM_GET/SET_PIT2. */
@FieldOrder({"channels", "flags", "reserved"})
public class KvmPitState2 extends NativeStruct {
    public static final int KVM_PIT_FLAGS_HPET_LEGACY = 0x00000001;
    public static final int KVM_PIT_FLAGS_SPEAKER_DATA_ON = 0x00000002;

    public KvmPitChannelState[] channels = {
        new KvmPitChannelState(), new KvmPitChannelState(), new KvmPitChannelState()
    };
    public int flags;
    public int[] reserved = new int[9];

    public KvmPitState2() {}

    public KvmPitState2(Pointer p) {
        super(p);
        read();
    }
}
