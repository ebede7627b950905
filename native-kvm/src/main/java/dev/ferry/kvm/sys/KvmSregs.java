package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_sregs} (asm/kvm.h): for KVM_GET_SREGS and KVM_SET_SREGS. */
@FieldOrder({"cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt", "gdt", "idt",
        "cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base", "interrupt_bitmap"})
public class KvmSregs extends NativeStruct {
    /** KVM_NR_INTERRUPTS (256) bits. */
    public static final int INTERRUPT_BITMAP_WORDS = (256 + 63) / 64;

    /* out (KVM_GET_SREGS) / in (KVM_SET_SREGS) */
    public KvmSegment cs = new KvmSegment(), ds = new KvmSegment(), es = new KvmSegment(),
            fs = new KvmSegment(), gs = new KvmSegment(), ss = new KvmSegment();
    public KvmSegment tr = new KvmSegment(), ldt = new KvmSegment();
    public KvmDtable gdt = new KvmDtable(), idt = new KvmDtable();
    public long cr0, cr2, cr3, cr4, cr8;
    public long efer;
    public long apic_base;
    public long[] interrupt_bitmap = new long[INTERRUPT_BITMAP_WORDS];

    public KvmSregs() {}

    public KvmSregs(Pointer p) {
        super(p);
        read();
    }
}
