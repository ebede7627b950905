package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_pit_config} (linux/kvm.h): for KVM_CREATE_PIT2. */
@FieldOrder({"flags", "pad"})
public class KvmPitConfig extends NativeStruct {
    public static final int KVM_PIT_SPEAKER_DUMMY = 1;

    public int flags;
    public int[] pad = new int[15];

    public KvmPitConfig() {}

    public KvmPitConfig(Pointer p) {
        super(p);
        read();
    }
}
