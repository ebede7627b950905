package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_fpu} (asm/kvm.h): for KVM_GET_FPU and KVM_SET_FPU. */
@FieldOrder({"fpr", "fcw", "fsw", "ftwx", "pad1", "last_opcode", "last_ip", "last_dp", "xmm",
        "mxcsr", "pad2"})
public class KvmFpu extends NativeStruct {
    /** {@code __u8 fpr[8][16]}, flattened row-major. */
    public byte[] fpr = new byte[8 * 16];
    public short fcw;
    public short fsw;
    public byte ftwx; /* in fxsave format */
    public byte pad1;
    public short last_opcode;
    public long last_ip;
    public long last_dp;
    /** {@code __u8 xmm[16][16]}, flattened row-major. */
    public byte[] xmm = new byte[16 * 16];
    public int mxcsr;
    public int pad2;

    public KvmFpu() {}

    public KvmFpu(Pointer p) {
        super(p);
        read();
    }
}
