package dev.ferry.kvm.sys;

import com.sun.jna.Memory;
import com.sun.jna.Pointer;

/**
 * The variable-length {@code struct kvm_msrs} (asm/kvm.h) for KVM_GET_MSRS / KVM_SET_MSRS:
 * a header {@code {__u32 nmsrs; __u32 pad;}} followed by {@code nmsrs} {@link KvmMsrEntry}s, in one
 * native buffer. Both ioctls return the number of entries the kernel processed, which stops at the
 * first MSR it refuses.
 */
public final class KvmMsrs {
    /** sizeof(struct kvm_msrs): nmsrs + pad. */
    public static final int HEADER_SIZE = 8;
    /** sizeof(struct kvm_msr_entry). */
    public static final int ENTRY_SIZE = 16;
    static final int ENTRY_INDEX_OFFSET = 0;
    static final int ENTRY_DATA_OFFSET = 8;

    private final Memory memory;
    private final int count;

    public KvmMsrs(int count) {
        if (count < 0) {
            throw new IllegalArgumentException("count < 0");
        }
        this.count = count;
        this.memory = new Memory(HEADER_SIZE + (long) ENTRY_SIZE * Math.max(count, 1));
        memory.clear();
        memory.setInt(0, count);
    }

    /** Entries for {@code indices}, data 0 (for KVM_GET_MSRS). */
    public static KvmMsrs of(int[] indices) {
        KvmMsrs m = new KvmMsrs(indices.length);
        for (int i = 0; i < indices.length; i++) {
            m.setIndex(i, indices[i]);
        }
        return m;
    }

    /** Entries for {@code indices} with {@code values} (for KVM_SET_MSRS). */
    public static KvmMsrs of(int[] indices, long[] values) {
        if (indices.length != values.length) {
            throw new IllegalArgumentException("indices and values differ in length");
        }
        KvmMsrs m = of(indices);
        for (int i = 0; i < values.length; i++) {
            m.setData(i, values[i]);
        }
        return m;
    }

    public Pointer pointer() {
        return memory;
    }

    public int count() {
        return count;
    }

    public int index(int i) {
        return memory.getInt(entryOffset(i) + ENTRY_INDEX_OFFSET);
    }

    public void setIndex(int i, int msrIndex) {
        memory.setInt(entryOffset(i) + ENTRY_INDEX_OFFSET, msrIndex);
    }

    public long data(int i) {
        return memory.getLong(entryOffset(i) + ENTRY_DATA_OFFSET);
    }

    public void setData(int i, long value) {
        memory.setLong(entryOffset(i) + ENTRY_DATA_OFFSET, value);
    }

    public long[] data() {
        long[] out = new long[count];
        for (int i = 0; i < count; i++) {
            out[i] = data(i);
        }
        return out;
    }

    private long entryOffset(int i) {
        if (i < 0 || i >= count) {
            throw new IndexOutOfBoundsException(i);
        }
        return HEADER_SIZE + (long) ENTRY_SIZE * i;
    }
}
