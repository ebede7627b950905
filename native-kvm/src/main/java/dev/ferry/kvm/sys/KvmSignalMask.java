package dev.ferry.kvm.sys;

import com.sun.jna.Memory;
import com.sun.jna.Pointer;
import dev.ferry.linux.Signals;

/**
 * The variable-length {@code struct kvm_signal_mask} (linux/kvm.h): {@code {__u32 len; __u8 sigset[];}}
 * for KVM_SET_SIGNAL_MASK. KVM wants the kernel's sigset_t, which on x86-64 is 8 bytes (64 signals,
 * signal n is bit n-1), not glibc's 128-byte sigset_t.
 */
public final class KvmSignalMask {
    /** sizeof(struct kvm_signal_mask). */
    public static final int HEADER_SIZE = 4;
    /** sizeof(kernel sigset_t) on x86-64. */
    public static final int KERNEL_SIGSET_SIZE = Signals.KERNEL_SIGSET_SIZE;

    private final Memory memory;

    /** A mask with the given kernel sigset bits (bit n-1 blocks signal n). */
    public KvmSignalMask(long kernelSigsetBits) {
        memory = new Memory(HEADER_SIZE + KERNEL_SIGSET_SIZE);
        memory.setInt(0, KERNEL_SIGSET_SIZE);
        memory.setLong(HEADER_SIZE, kernelSigsetBits);
    }

    public Pointer pointer() {
        return memory;
    }

    public long bits() {
        return memory.getLong(HEADER_SIZE);
    }
}
