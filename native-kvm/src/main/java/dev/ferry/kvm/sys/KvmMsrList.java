package dev.ferry.kvm.sys;

import com.sun.jna.Memory;
import dev.ferry.linux.Errno;
import dev.ferry.linux.LibC;
import dev.ferry.linux.NativeException;

/**
 * The variable-length {@code struct kvm_msr_list} (asm/kvm.h): {@code {__u32 nmsrs; __u32 indices[];}}
 * for KVM_GET_MSR_INDEX_LIST (and KVM_GET_MSR_FEATURE_INDEX_LIST) on the /dev/kvm fd.
 */
public final class KvmMsrList {
    /** sizeof(struct kvm_msr_list). */
    public static final int HEADER_SIZE = 4;

    private KvmMsrList() {}

    /**
     * Asks with nmsrs = 0 first: the kernel answers E2BIG and writes the real count, then the
     * list is fetched with a buffer of that size (retrying if it grew in between).
     */
    public static int[] query(int kvmFd, long request, String op) {
        int n = 0;
        for (int attempt = 0; attempt < 8; attempt++) {
            Memory m = new Memory(HEADER_SIZE + 4L * Math.max(n, 1));
            m.clear();
            m.setInt(0, n);
            int rc = LibC.ioctl(kvmFd, request, m);
            if (rc >= 0) {
                int got = m.getInt(0);
                return m.getIntArray(HEADER_SIZE, got);
            }
            int errno = com.sun.jna.Native.getLastError();
            if (errno != Errno.E2BIG) {
                throw new NativeException(op, errno);
            }
            n = m.getInt(0);
        }
        throw new NativeException(op, Errno.E2BIG);
    }
}
