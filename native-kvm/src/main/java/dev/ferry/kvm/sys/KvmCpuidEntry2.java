package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/** {@code struct kvm_cpuid_entry2} (asm/kvm.h). See {@link KvmCpuid2} for the list. */
@FieldOrder({"function", "index", "flags", "eax", "ebx", "ecx", "edx", "padding"})
public class KvmCpuidEntry2 extends NativeStruct {
    public static final int KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1 << 0;
    public static final int KVM_CPUID_FLAG_STATEFUL_FUNC = 1 << 1;
    public static final int KVM_CPUID_FLAG_STATE_READ_NEXT = 1 << 2;

    public int function;
    public int index;
    public int flags;
    public int eax;
    public int ebx;
    public int ecx;
    public int edx;
    public int[] padding = new int[3];

    public KvmCpuidEntry2() {}

    public KvmCpuidEntry2(Pointer p) {
        super(p);
        read();
    }

    /** An entry with the given leaf, subleaf, flags and registers. */
    public static KvmCpuidEntry2 of(int function, int index, int flags, int eax, int ebx, int ecx, int edx) {
        KvmCpuidEntry2 e = new KvmCpuidEntry2();
        e.function = function;
        e.index = index;
        e.flags = flags;
        e.eax = eax;
        e.ebx = ebx;
        e.ecx = ecx;
        e.edx = edx;
        return e;
    }

    @Override
    public String toString() {
        return String.format("cpuid(0x%x,%d flags=%d) eax=%08x ebx=%08x ecx=%08x edx=%08x",
                function, index, flags, eax, ebx, ecx, edx);
    }
}
