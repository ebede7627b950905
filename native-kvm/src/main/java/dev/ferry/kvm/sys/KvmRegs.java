package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_regs} (asm/kvm.h): for KVM_GET_REGS and KVM_SET_REGS. */
@FieldOrder({"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags"})
public class KvmRegs extends NativeStruct {
    /* out (KVM_GET_REGS) / in (KVM_SET_REGS) */
    public long rax, rbx, rcx, rdx;
    public long rsi, rdi, rsp, rbp;
    public long r8, r9, r10, r11;
    public long r12, r13, r14, r15;
    public long rip, rflags;

    public KvmRegs() {}

    public KvmRegs(Pointer p) {
        super(p);
        read();
    }
}
