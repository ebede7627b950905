package dev.ferry.linux;

import com.sun.jna.Pointer;
import com.sun.jna.Structure;

/** Helpers for ioctl calls that throw {@link NativeException} on failure. */
public final class Fd {
    private Fd() {}

    public static int ioctl(int fd, long request, long arg, String op) {
        return NativeException.check(LibC.ioctl(fd, request, arg), op);
    }

    public static int ioctl(int fd, long request, Pointer arg, String op) {
        return NativeException.check(LibC.ioctl(fd, request, arg), op);
    }

    /** ioctl that fills {@code s} (KVM_GET_*): returns {@code s}, read back from native memory. */
    public static <T extends Structure> T get(int fd, long request, T s, String op) {
        s.write(); // the kernel may read input fields (e.g. chip_id) or leave some untouched
        NativeException.check(LibC.ioctl(fd, request, s.getPointer()), op);
        s.read();
        return s;
    }

    /** ioctl that takes {@code s} (KVM_SET_*). */
    public static int set(int fd, long request, Structure s, String op) {
        s.write();
        return NativeException.check(LibC.ioctl(fd, request, s.getPointer()), op);
    }

    /** close(2) that ignores a negative fd; EINTR is not retried (the fd is gone on Linux). */
    public static void close(int fd, String what) {
        if (fd >= 0 && LibC.close(fd) < 0) {
            int errno = com.sun.jna.Native.getLastError();
            if (errno != Errno.EINTR) {
                throw new NativeException("close(" + what + ")", errno);
            }
        }
    }
}
