package dev.ferry.linux;

/**
 * errno values from asm-generic/errno-base.h and asm-generic/errno.h (x86-64), with their
 * symbolic names and the glibc {@code strerror} text (C locale), so errors read like
 * {@code KVM_RUN: EINTR (4): Interrupted system call} without a locale-dependent libc call.
 */
public final class Errno {
    private Errno() {}

    public static final int EPERM = 1; /* Operation not permitted */
    public static final int ENOENT = 2; /* No such file or directory */
    public static final int ESRCH = 3; /* No such process */
    public static final int EINTR = 4; /* Interrupted system call */
    public static final int EIO = 5; /* I/O error */
    public static final int ENXIO = 6; /* No such device or address */
    public static final int E2BIG = 7; /* Argument list too long */
    public static final int ENOEXEC = 8; /* Exec format error */
    public static final int EBADF = 9; /* Bad file number */
    public static final int ECHILD = 10; /* No child processes */
    public static final int EAGAIN = 11; /* Try again */
    public static final int ENOMEM = 12; /* Out of memory */
    public static final int EACCES = 13; /* Permission denied */
    public static final int EFAULT = 14; /* Bad address */
    public static final int EBUSY = 16; /* Device or resource busy */
    public static final int EEXIST = 17; /* File exists */
    public static final int EXDEV = 18; /* Cross-device link */
    public static final int ENODEV = 19; /* No such device */
    public static final int ENOTDIR = 20; /* Not a directory */
    public static final int EISDIR = 21; /* Is a directory */
    public static final int EINVAL = 22; /* Invalid argument */
    public static final int ENFILE = 23; /* File table overflow */
    public static final int EMFILE = 24; /* Too many open files */
    public static final int ENOTTY = 25; /* Not a typewriter */
    public static final int EFBIG = 27; /* File too large */
    public static final int ENOSPC = 28; /* No space left on device */
    public static final int ESPIPE = 29; /* Illegal seek */
    public static final int EROFS = 30; /* Read-only file system */
    public static final int EPIPE = 32; /* Broken pipe */
    public static final int ERANGE = 34; /* Math result not representable */
    public static final int EDEADLK = 35; /* Resource deadlock would occur */
    public static final int ENOSYS = 38; /* Invalid system call number */
    public static final int ENODATA = 61; /* No data available */
    public static final int ETIME = 62; /* Timer expired */
    public static final int EOVERFLOW = 75; /* Value too large for defined data type */
    public static final int EOPNOTSUPP = 95; /* Operation not supported on transport endpoint */
    public static final int ETIMEDOUT = 110; /* Connection timed out */
    public static final int EHWPOISON = 133; /* Memory page has hardware error */

    /** errno symbol, e.g. {@code "EINTR"}; {@code "E#<n>"} for values not listed here. */
    public static String name(int errno) {
        String[] e = entry(errno);
        return e != null ? e[0] : "E#" + errno;
    }

    /** strerror text in the C locale, e.g. {@code "Interrupted system call"}. */
    public static String description(int errno) {
        String[] e = entry(errno);
        return e != null ? e[1] : "Unknown error " + errno;
    }

    private static String[] entry(int errno) {
        return switch (errno) {
            case EPERM -> new String[] {"EPERM", "Operation not permitted"};
            case ENOENT -> new String[] {"ENOENT", "No such file or directory"};
            case ESRCH -> new String[] {"ESRCH", "No such process"};
            case EINTR -> new String[] {"EINTR", "Interrupted system call"};
            case EIO -> new String[] {"EIO", "Input/output error"};
            case ENXIO -> new String[] {"ENXIO", "No such device or address"};
            case E2BIG -> new String[] {"E2BIG", "Argument list too long"};
            case ENOEXEC -> new String[] {"ENOEXEC", "Exec format error"};
            case EBADF -> new String[] {"EBADF", "Bad file descriptor"};
            case ECHILD -> new String[] {"ECHILD", "No child processes"};
            case EAGAIN -> new String[] {"EAGAIN", "Resource temporarily unavailable"};
            case ENOMEM -> new String[] {"ENOMEM", "Cannot allocate memory"};
            case EACCES -> new String[] {"EACCES", "Permission denied"};
            case EFAULT -> new String[] {"EFAULT", "Bad address"};
            case EBUSY -> new String[] {"EBUSY", "Device or resource busy"};
            case EEXIST -> new String[] {"EEXIST", "File exists"};
            case EXDEV -> new String[] {"EXDEV", "Invalid cross-device link"};
            case ENODEV -> new String[] {"ENODEV", "No such device"};
            case ENOTDIR -> new String[] {"ENOTDIR", "Not a directory"};
            case EISDIR -> new String[] {"EISDIR", "Is a directory"};
            case EINVAL -> new String[] {"EINVAL", "Invalid argument"};
            case ENFILE -> new String[] {"ENFILE", "Too many open files in system"};
            case EMFILE -> new String[] {"EMFILE", "Too many open files"};
            case ENOTTY -> new String[] {"ENOTTY", "Inappropriate ioctl for device"};
            case EFBIG -> new String[] {"EFBIG", "File too large"};
            case ENOSPC -> new String[] {"ENOSPC", "No space left on device"};
            case ESPIPE -> new String[] {"ESPIPE", "Illegal seek"};
            case EROFS -> new String[] {"EROFS", "Read-only file system"};
            case EPIPE -> new String[] {"EPIPE", "Broken pipe"};
            case ERANGE -> new String[] {"ERANGE", "Numerical result out of range"};
            case EDEADLK -> new String[] {"EDEADLK", "Resource deadlock avoided"};
            case ENOSYS -> new String[] {"ENOSYS", "Function not implemented"};
            case ENODATA -> new String[] {"ENODATA", "No data available"};
            case ETIME -> new String[] {"ETIME", "Timer expired"};
            case EOVERFLOW -> new String[] {"EOVERFLOW", "Value too large for defined data type"};
            case EOPNOTSUPP -> new String[] {"EOPNOTSUPP", "Operation not supported"};
            case ETIMEDOUT -> new String[] {"ETIMEDOUT", "Connection timed out"};
            case EHWPOISON -> new String[] {"EHWPOISON", "Memory page has hardware error"};
            default -> null;
        };
    }
}
