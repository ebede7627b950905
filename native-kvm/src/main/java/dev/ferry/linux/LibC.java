package dev.ferry.linux;

import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;
import com.sun.jna.Pointer;

/**
 * Direct-mapped glibc entry points (fcntl.h, unistd.h, sys/mman.h, sys/ioctl.h, poll.h,
 * sys/eventfd.h, signal.h, sys/syscall.h) on x86-64 Linux.
 *
 * <p>Every function reports failure the C way (-1, or {@link #MAP_FAILED} for mmap) and leaves
 * errno in JNA's per-thread copy: read it with {@link Native#getLastError()} on the same thread
 * right after the call, or let {@link NativeException#check(int, String)} do it. Direct mapping
 * with primitive arguments neither allocates nor takes a lock, which is what the vCPU hot path
 * ({@code ioctl(fd, KVM_RUN, 0)}) relies on.
 *
 * <p>Every numeric constant here is checked against the C headers by {@code StructLayoutTest}.
 */
public final class LibC {
    static {
        Native.register(NativeLibrary.getInstance("c"));
    }

    private LibC() {}

    // ---- fcntl.h / asm-generic/fcntl.h --------------------------------------------------------
    public static final int O_RDONLY = 00;
    public static final int O_WRONLY = 01;
    public static final int O_RDWR = 02;
    public static final int SEEK_DATA = 3; /* seek to the next data */
    public static final int SEEK_HOLE = 4; /* seek to the next hole */
    public static final int O_NONBLOCK = 04000;
    public static final int O_CLOEXEC = 02000000; /* set close_on_exec */

    // ---- sys/mman.h / asm-generic/mman-common.h -----------------------------------------------
    public static final int PROT_NONE = 0x0; /* page can not be accessed */
    public static final int PROT_READ = 0x1; /* page can be read */
    public static final int PROT_WRITE = 0x2; /* page can be written */
    public static final int PROT_EXEC = 0x4; /* page can be executed */

    public static final int MAP_SHARED = 0x01; /* Share changes */
    public static final int MAP_PRIVATE = 0x02; /* Changes are private */
    public static final int MAP_FIXED = 0x10; /* Interpret addr exactly */
    public static final int MAP_ANONYMOUS = 0x20; /* don't use a file */
    public static final int MAP_NORESERVE = 0x4000; /* don't check for reservations */
    public static final int MAP_POPULATE = 0x008000; /* populate (prefault) pagetables */

    /** {@code (void *) -1}: what mmap returns on failure. Compare with {@link #isMapFailed}. */
    public static final Pointer MAP_FAILED = new Pointer(-1L);

    public static boolean isMapFailed(Pointer p) {
        return p == null || Pointer.nativeValue(p) == -1L;
    }

    public static final int MADV_NORMAL = 0; /* no further special treatment */
    public static final int MADV_WILLNEED = 3; /* will need these pages */
    public static final int MADV_DONTNEED = 4; /* don't need these pages */
    public static final int MADV_REMOVE = 9; /* remove these pages & resources */

    public static final int MFD_CLOEXEC = 0x0001; /* bits/mman-shared.h, linux/memfd.h */
    public static final int MFD_ALLOW_SEALING = 0x0002;

    // ---- poll.h / asm-generic/poll.h ------------------------------------------------------------
    public static final short POLLIN = 0x0001;
    public static final short POLLPRI = 0x0002;
    public static final short POLLOUT = 0x0004;
    public static final short POLLERR = 0x0008;
    public static final short POLLHUP = 0x0010;
    public static final short POLLNVAL = 0x0020;
    /** sizeof(struct pollfd): { int fd; short events; short revents; }. */
    public static final int SIZEOF_POLLFD = 8;

    // ---- sys/eventfd.h --------------------------------------------------------------------------
    public static final int EFD_SEMAPHORE = 00000001;
    public static final int EFD_CLOEXEC = 02000000;
    public static final int EFD_NONBLOCK = 00004000;

    // ---- signal.h ---------------------------------------------------------------------------------
    public static final int SIG_BLOCK = 0; /* Block signals.  */
    public static final int SIG_UNBLOCK = 1; /* Unblock signals.  */
    public static final int SIG_SETMASK = 2; /* Set the set of blocked signals.  */

    public static final int SIGKILL = 9;
    public static final int SIGUSR1 = 10;
    public static final int SIGUSR2 = 12;
    public static final int SIGTERM = 15;

    // ---- sys/resource.h ------------------------------------------------------------------------
    public static final int PRIO_PROCESS = 0; /* with a thread id: that one thread (Linux) */

    // ---- linux/sched.h --------------------------------------------------------------------------
    public static final int SCHED_NORMAL = 0;
    /** sched_attr.sched_flags: threads this one starts do not inherit a negative nice or a custom slice. */
    public static final long SCHED_FLAG_RESET_ON_FORK = 0x01;

    // ---- sys/syscall.h (asm/unistd_64.h) --------------------------------------------------------
    public static final int SYS_getpriority = 140;
    public static final int SYS_sched_setattr = 314;
    public static final int SYS_tgkill = 234;
    public static final int SYS_userfaultfd = 323;

    // ---- functions ------------------------------------------------------------------------------

    public static native int open(String path, int flags);

    public static native int close(int fd);

    /** {@code int ioctl(int fd, unsigned long request, ...)} with an integer argument. */
    public static native int ioctl(int fd, long request, long arg);

    /** {@code int ioctl(int fd, unsigned long request, ...)} with a pointer argument. */
    public static native int ioctl(int fd, long request, Pointer arg);

    public static native Pointer mmap(Pointer addr, long length, int prot, int flags, int fd, long offset);

    public static native int munmap(Pointer addr, long length);

    public static native int madvise(Pointer addr, long length, int advice);

    public static native int memfd_create(String name, int flags);

    /** lseek(2); with {@link #SEEK_DATA}/{@link #SEEK_HOLE} it finds the populated extents of a memfd. */
    public static native long lseek(int fd, long offset, int whence);

    public static native int ftruncate(int fd, long length);

    public static native long read(int fd, Pointer buf, long count);

    public static native long write(int fd, Pointer buf, long count);

    public static native long pread(int fd, Pointer buf, long count, long offset);

    public static native long pwrite(int fd, Pointer buf, long count, long offset);

    /** {@code int poll(struct pollfd *fds, nfds_t nfds, int timeout)}. */
    public static native int poll(Pointer fds, long nfds, int timeoutMs);

    public static native int eventfd(int initval, int flags);

    public static native int getpid();

    /** glibc >= 2.30. */
    public static native int gettid();

    public static native int getpagesize();

    /** {@code int setpriority(int which, id_t who, int prio)}: a nice value. */
    public static native int setpriority(int which, int who, int prio);

    /** {@code long syscall(long number, ...)}: fixed-arity views of the variadic call. */
    public static native long syscall(long number, long a1);

    public static native long syscall(long number, long a1, long a2);

    public static native long syscall(long number, long a1, long a2, long a3);

    public static native int pthread_sigmask(int how, Pointer set, Pointer oldset);

    public static native int sigprocmask(int how, Pointer set, Pointer oldset);

    public static native int sigpending(Pointer set);

    public static native int sigtimedwait(Pointer set, Pointer info, Pointer timeout);

    public static native int sigemptyset(Pointer set);

    public static native int sigfillset(Pointer set);

    public static native int sigaddset(Pointer set, int sig);

    public static native int sigdelset(Pointer set, int sig);

    public static native int sigismember(Pointer set, int sig);

    /** What the glibc macro SIGRTMIN expands to (34 with NPTL: 32 and 33 are reserved). */
    public static native int __libc_current_sigrtmin();

    /** What the glibc macro SIGRTMAX expands to. */
    public static native int __libc_current_sigrtmax();

    // ---- Java helpers over syscall(2) -----------------------------------------------------------

    /** {@code userfaultfd(2)}; -1 and errno on failure. */
    public static int userfaultfd(int flags) {
        return (int) syscall(SYS_userfaultfd, flags);
    }

    /** The raw {@code getpriority(2)}: 20 - nice (1..40), or -1 and errno; never ambiguous, unlike glibc's. */
    public static int getpriorityRaw(int which, int who) {
        return (int) syscall(SYS_getpriority, which, who);
    }

    /** {@code sched_setattr(2)} for thread {@code tid}; -1 and errno on failure. */
    public static int schedSetattr(int tid, SchedAttr attr) {
        attr.size = attr.size();
        attr.write();
        return (int) syscall(SYS_sched_setattr, tid, com.sun.jna.Pointer.nativeValue(attr.getPointer()), 0);
    }

    /** {@code tgkill(2)}: send {@code sig} to thread {@code tid} of thread group {@code tgid}. */
    public static int tgkill(int tgid, int tid, int sig) {
        return (int) syscall(SYS_tgkill, tgid, tid, sig);
    }
}
