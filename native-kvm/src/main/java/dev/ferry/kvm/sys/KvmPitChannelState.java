package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_pit_channel_state} (asm/kvm.h): one i8254 channel. */
@FieldOrder({"count", "latched_count", "count_latched", "status_latched", "status", "read_state",
        "write_state", "write_latch", "rw_mode", "mode", "bcd", "gate", "count_load_time"})
public class KvmPitChannelState extends NativeStruct {
    public int count; /* can be 65536 */
    public short latched_count;
    public byte count_latched;
    public byte status_latched;
    public byte status;
    public byte read_state;
    public byte write_state;
    public byte write_latch;
    public byte rw_mode;
    public byte mode;
    public byte bcd;
    public byte gate;
    /** Host ktime (ns) of the last count load; KVM_SET_PIT2 resets it to "now". */
    public long count_load_time;

    public KvmPitChannelState() {}

    public KvmPitChannelState(Pointer p) {
        super(p);
        read();
    }
}
