package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/**
 * {@code struct kvm_irqchip} (linux/kvm.h): for KVM_GET/SET_IRQCHIP. {@link #chip} is the
 * 512-byte union; {@link #pic()} and {@link #ioapic()} give typed views of it.
 */
@FieldOrder({"chip_id", "pad", "chip"})
public class KvmIrqchip extends NativeStruct {
    public static final int KVM_IRQCHIP_PIC_MASTER = 0;
    public static final int KVM_IRQCHIP_PIC_SLAVE = 1;
    public static final int KVM_IRQCHIP_IOAPIC = 2;
    public static final int KVM_NR_IRQCHIPS = 3;

    public int chip_id;
    public int pad;
    /** union { char dummy[512]; struct kvm_pic_state pic; struct kvm_ioapic_state ioapic; } */
    public byte[] chip = new byte[512];

    public KvmIrqchip() {}

    public KvmIrqchip(int chipId) {
        this.chip_id = chipId;
    }

    public KvmIrqchip(Pointer p) {
        super(p);
        read();
    }

    /** The chip union read as a PIC (chip_id 0 or 1); a copy, use {@link #setPic} to write back. */
    public KvmPicState pic() {
        KvmPicState s = new KvmPicState();
        s.getPointer().write(0, chip, 0, s.size());
        s.read();
        return s;
    }

    public void setPic(KvmPicState s) {
        byte[] b = s.toBytes();
        System.arraycopy(b, 0, chip, 0, b.length);
    }

    /** The chip union read as an IOAPIC (chip_id 2); a copy, use {@link #setIoapic} to write back. */
    public KvmIoapicState ioapic() {
        KvmIoapicState s = new KvmIoapicState();
        s.getPointer().write(0, chip, 0, s.size());
        s.read();
        return s;
    }

    public void setIoapic(KvmIoapicState s) {
        byte[] b = s.toBytes();
        System.arraycopy(b, 0, chip, 0, b.length);
    }
}
