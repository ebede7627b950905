package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_pic_state} (asm/kvm.h): one 8259 in {@link KvmIrqchip#chip}. */
@FieldOrder({"last_irr", "irr", "imr", "isr", "priority_add", "irq_base", "read_reg_select",
        "poll", "special_mask", "init_state", "auto_eoi", "rotate_on_auto_eoi",
        "special_fully_nested_mode", "init4", "elcr", "elcr_mask"})
public class KvmPicState extends NativeStruct {
    public byte last_irr; /* edge detection */
    public byte irr; /* interrupt request register */
    public byte imr; /* interrupt mask register */
    public byte isr; /* interrupt service register */
    public byte priority_add; /* highest irq priority */
    public byte irq_base;
    public byte read_reg_select;
    public byte poll;
    public byte special_mask;
    public byte init_state;
    public byte auto_eoi;
    public byte rotate_on_auto_eoi;
    public byte special_fully_nested_mode;
    public byte init4; /* true if 4 byte init */
    public byte elcr; /* PIIX edge/trigger selection */
    public byte elcr_mask;

    public KvmPicState() {}

    public KvmPicState(Pointer p) {
        super(p);
        read();
    }
}
