package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_lapic_state} (asm/kvm.h): the 1 KiB APIC register page, KVM_GET/SET_LAPIC. */
@FieldOrder({"regs"})
public class KvmLapicState extends NativeStruct {
    public static final int KVM_APIC_REG_SIZE = 0x400;

    public byte[] regs = new byte[KVM_APIC_REG_SIZE];

    public KvmLapicState() {}

    public KvmLapicState(Pointer p) {
        super(p);
        read();
    }

    /** The 32-bit APIC register at {@code offset} (e.g. 0x20 = APIC ID, 0x80 = TPR), little-endian. */
    public int reg(int offset) {
        return (regs[offset] & 0xff) | (regs[offset + 1] & 0xff) << 8
                | (regs[offset + 2] & 0xff) << 16 | (regs[offset + 3] & 0xff) << 24;
    }

    public void setReg(int offset, int value) {
        regs[offset] = (byte) value;
        regs[offset + 1] = (byte) (value >>> 8);
        regs[offset + 2] = (byte) (value >>> 16);
        regs[offset + 3] = (byte) (value >>> 24);
    }
}
