package dev.ferry.kvm.sys;

import com.sun.jna.Memory;
import com.sun.jna.Pointer;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The variable-length {@code struct kvm_cpuid2} (asm/kvm.h): {@code {__u32 nent; __u32 padding;}}
 * followed by {@link KvmCpuidEntry2}s, in one native buffer with room for {@link #capacity()}
 * entries. Used by KVM_GET_SUPPORTED_CPUID (system fd), KVM_SET_CPUID2 and KVM_GET_CPUID2 (vCPU
 * fd). The kernel reads and updates {@code nent}.
 */
public final class KvmCpuid2 {
    /** sizeof(struct kvm_cpuid2). */
    public static final int HEADER_SIZE = 8;
    /** sizeof(struct kvm_cpuid_entry2). */
    public static final int ENTRY_SIZE = 40;

    private final Memory memory;
    private final int capacity;

    /** An empty list with room for {@code capacity} entries; nent = capacity (what GET ioctls want). */
    public KvmCpuid2(int capacity) {
        if (capacity < 0) {
            throw new IllegalArgumentException("capacity < 0");
        }
        this.capacity = capacity;
        this.memory = new Memory(HEADER_SIZE + (long) ENTRY_SIZE * Math.max(capacity, 1));
        memory.clear();
        memory.setInt(0, capacity);
    }

    public static KvmCpuid2 of(List<KvmCpuidEntry2> entries) {
        KvmCpuid2 c = new KvmCpuid2(entries.size());
        for (int i = 0; i < entries.size(); i++) {
            c.setEntry(i, entries.get(i));
        }
        return c;
    }

    public Pointer pointer() {
        return memory;
    }

    public int capacity() {
        return capacity;
    }

    /** Number of valid entries (as last written by the kernel or {@link #setNent}). */
    public int nent() {
        return memory.getInt(0);
    }

    public void setNent(int nent) {
        if (nent < 0 || nent > capacity) {
            throw new IllegalArgumentException("nent " + nent + " outside 0.." + capacity);
        }
        memory.setInt(0, nent);
    }

    /** A copy of entry {@code i}. */
    public KvmCpuidEntry2 entry(int i) {
        return new KvmCpuidEntry2(memory.share(entryOffset(i), ENTRY_SIZE));
    }

    public void setEntry(int i, KvmCpuidEntry2 e) {
        byte[] raw = e.toBytes();
        memory.write(entryOffset(i), raw, 0, raw.length);
    }

    /** Copies of the first {@link #nent()} entries. */
    public List<KvmCpuidEntry2> entries() {
        int n = nent();
        List<KvmCpuidEntry2> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            KvmCpuidEntry2 e = new KvmCpuidEntry2();
            e.fromBytes(memory.getByteArray(entryOffset(i), ENTRY_SIZE));
            out.add(e);
        }
        return out;
    }

    /** The entry for leaf {@code function} / subleaf {@code index} (index ignored unless significant). */
    public Optional<KvmCpuidEntry2> find(int function, int index) {
        for (KvmCpuidEntry2 e : entries()) {
            if (e.function == function
                    && ((e.flags & KvmCpuidEntry2.KVM_CPUID_FLAG_SIGNIFCANT_INDEX) == 0 || e.index == index)) {
                return Optional.of(e);
            }
        }
        return Optional.empty();
    }

    private long entryOffset(int i) {
        if (i < 0 || i >= capacity) {
            throw new IndexOutOfBoundsException(i);
        }
        return HEADER_SIZE + (long) ENTRY_SIZE * i;
    }
}
