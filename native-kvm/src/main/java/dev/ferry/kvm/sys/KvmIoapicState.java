package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/**
 * {@code struct kvm_ioapic_state} (asm/kvm.h): the IOAPIC in {@link KvmIrqchip#chip}. Each
 * redirection entry is the {@code __u64 bits} view of the C union (vector in bits 0-7, mask in
 * bit 16, destination in bits 56-63).
 */
@FieldOrder({"base_address", "ioregsel", "id", "irr", "pad", "redirtbl"})
public class KvmIoapicState extends NativeStruct {
    public static final int KVM_IOAPIC_NUM_PINS = 24;

    public long base_address;
    public int ioregsel;
    public int id;
    public int irr;
    public int pad;
    public long[] redirtbl = new long[KVM_IOAPIC_NUM_PINS];

    public KvmIoapicState() {}

    public KvmIoapicState(Pointer p) {
        super(p);
        read();
    }
}
