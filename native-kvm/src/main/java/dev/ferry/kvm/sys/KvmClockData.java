package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/**
 * {@code struct kvm_clock_data} (linux/kvm.h): kvmclock for KVM_GET/SET_CLOCK. With
 * KVM_CLOCK_REALTIME in {@link #flags}, KVM_SET_CLOCK advances {@link #clock} by the host
 * CLOCK_REALTIME elapsed since {@link #realtime} (how a migration target accounts for downtime).
 */
@FieldOrder({"clock", "flags", "pad0", "realtime", "host_tsc", "pad"})
public class KvmClockData extends NativeStruct {
    public long clock;
    public int flags;
    public int pad0;
    public long realtime;
    public long host_tsc;
    public int[] pad = new int[4];

    public KvmClockData() {}

    public KvmClockData(Pointer p) {
        super(p);
        read();
    }
}
