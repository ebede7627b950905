package dev.ferry.linux;

import static dev.ferry.linux.UffdIoctls.*;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A userfaultfd after the UFFDIO_API handshake: register ranges, resolve faults with
 * UFFDIO_COPY / UFFDIO_ZEROPAGE, read fault events.
 *
 * <p>The resolving calls ({@link #copy}, {@link #zeropage}, {@link #wake}) and the event reads are
 * allocation-free: they use a per-thread scratch buffer and the OFF_* offsets of the uffd
 * structures (checked against gcc by StructLayoutTest). All methods may be called from several
 * threads at once (e.g. a fault-serving thread and a background prefetch thread).
 */
public final class Userfaultfd implements AutoCloseable {
    public static final String DEV_USERFAULTFD = "/dev/userfaultfd";

    /** Max events per {@link #readEvents} call. */
    public static final int MAX_BATCH = 120;

    private static final int SCRATCH_OPS = 0; // 64 bytes for uffdio_* structures
    private static final int SCRATCH_POLLFD = 64; // 2 x struct pollfd
    private static final int SCRATCH_EVENTS = 256; // MAX_BATCH x struct uffd_msg
    private static final ThreadLocal<Memory> SCRATCH =
            ThreadLocal.withInitial(() -> new Memory(SCRATCH_EVENTS + (long) UffdMsg.SIZE * MAX_BATCH));

    private final AtomicInteger fd;
    private final long requestedFeatures;
    private final long features;
    private final long ioctls;

    private Userfaultfd(int fd, long requestedFeatures, long features, long ioctls) {
        this.fd = new AtomicInteger(fd);
        this.requestedFeatures = requestedFeatures;
        this.features = features;
        this.ioctls = ioctls;
    }

    /**
     * A userfaultfd able to handle kernel-mode faults too (KVM touches guest memory from the
     * kernel, so UFFD_USER_MODE_ONLY must stay off): first the userfaultfd(2) syscall, and if that
     * is refused (EPERM: vm.unprivileged_userfaultfd=0 without CAP_SYS_PTRACE; or ENOSYS) then
     * /dev/userfaultfd + USERFAULTFD_IOC_NEW, which only needs access to the device node.
     *
     * @param flags O_CLOEXEC, O_NONBLOCK (use O_NONBLOCK for {@link #readEvent} to return false)
     * @param requestedFeatures UFFD_FEATURE_* to enable; the handshake fails with EINVAL if the
     *     kernel lacks one
     */
    public static Userfaultfd open(int flags, long requestedFeatures) {
        int fd = LibC.userfaultfd(flags & ~UFFD_USER_MODE_ONLY);
        if (fd < 0) {
            int errno = Native.getLastError();
            if (errno != Errno.EPERM && errno != Errno.ENOSYS) {
                throw new NativeException("userfaultfd", errno);
            }
            return openViaDevice(flags, requestedFeatures);
        }
        return handshake(fd, requestedFeatures);
    }

    /** userfaultfd(2) only. */
    public static Userfaultfd openViaSyscall(int flags, long requestedFeatures) {
        int fd = NativeException.check(LibC.userfaultfd(flags & ~UFFD_USER_MODE_ONLY), "userfaultfd");
        return handshake(fd, requestedFeatures);
    }

    /** /dev/userfaultfd + ioctl(USERFAULTFD_IOC_NEW, flags) only (Linux 6.1+). */
    public static Userfaultfd openViaDevice(int flags, long requestedFeatures) {
        int dev = NativeException.check(LibC.open(DEV_USERFAULTFD, LibC.O_RDWR | LibC.O_CLOEXEC), "open(" + DEV_USERFAULTFD + ")");
        int fd;
        try {
            fd = Fd.ioctl(dev, USERFAULTFD_IOC_NEW, flags & ~UFFD_USER_MODE_ONLY, "USERFAULTFD_IOC_NEW");
        } finally {
            LibC.close(dev);
        }
        return handshake(fd, requestedFeatures);
    }

    /** Why no kernel-mode-capable userfaultfd can be had here, or empty. */
    public static Optional<String> unavailableReason() {
        try {
            open(LibC.O_CLOEXEC | LibC.O_NONBLOCK, 0).close();
            return Optional.empty();
        } catch (NativeException e) {
            String dev = Files.exists(Path.of(DEV_USERFAULTFD)) ? "" : " (and " + DEV_USERFAULTFD + " does not exist)";
            return Optional.of("userfaultfd unavailable: " + e.getMessage() + dev);
        }
    }

    public static boolean available() {
        return unavailableReason().isEmpty();
    }

    /**
     * Why this host cannot trap a guest's pages for postcopy, or empty: a trap ({@link
     * dev.ferry.memory.MissingPageTrap}) needs MISSING and MINOR faults on shared memory (Linux 5.14+), MINOR so that
     * hybrid's stale pages can stay in memory and still trap.
     */
    public static Optional<String> postcopyUnavailableReason() {
        try {
            open(LibC.O_CLOEXEC | LibC.O_NONBLOCK, UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM).close();
            return Optional.empty();
        } catch (NativeException e) {
            return Optional.of(unavailableReason().orElse("userfaultfd offers no MISSING and MINOR faults on shared "
                    + "memory here (Linux 5.14 or later): " + e.getMessage()));
        }
    }

    private static Userfaultfd handshake(int fd, long requestedFeatures) {
        try {
            UffdioApi api = new UffdioApi();
            api.api = UFFD_API;
            api.features = requestedFeatures;
            Fd.get(fd, UFFDIO_API, api, "UFFDIO_API");
            return new Userfaultfd(fd, requestedFeatures, api.features, api.ioctls);
        } catch (RuntimeException e) {
            LibC.close(fd);
            throw e;
        }
    }

    public int fd() {
        int f = fd.get();
        if (f < 0) {
            throw new IllegalStateException("Userfaultfd is closed");
        }
        return f;
    }

    /** UFFD_FEATURE_* the kernel reported as available in the handshake. */
    public long features() {
        return features;
    }

    /** UFFD_FEATURE_* this fd was opened with (the enabled ones). */
    public long requestedFeatures() {
        return requestedFeatures;
    }

    /** Bitmask (1 << _UFFDIO_*) of the fd-level ioctls the kernel reported. */
    public long ioctls() {
        return ioctls;
    }

    /**
     * UFFDIO_REGISTER {@code [start, start+len)} (page-aligned) with UFFDIO_REGISTER_MODE_*.
     * Returns the bitmask (1 << _UFFDIO_*) of range ioctls available, e.g. _UFFDIO_COPY.
     */
    public long register(long start, long len, long mode) {
        UffdioRegister r = new UffdioRegister();
        r.range.start = start;
        r.range.len = len;
        r.mode = mode;
        return Fd.get(fd(), UFFDIO_REGISTER, r, "UFFDIO_REGISTER").ioctls;
    }

    public void unregister(long start, long len) {
        Fd.set(fd(), UFFDIO_UNREGISTER, new UffdioRange(start, len), "UFFDIO_UNREGISTER");
    }

    /**
     * UFFDIO_WRITEPROTECT {@code [start, start+len)} (page-aligned, registered with
     * UFFDIO_REGISTER_MODE_WP): {@code mode} UFFDIO_WRITEPROTECT_MODE_WP protects the range, 0
     * removes the protection (and wakes threads blocked on it unless
     * UFFDIO_WRITEPROTECT_MODE_DONTWAKE).
     */
    public void writeprotect(long start, long len, long mode) {
        UffdioWriteprotect w = new UffdioWriteprotect();
        w.range.start = start;
        w.range.len = len;
        w.mode = mode;
        Fd.set(fd(), UFFDIO_WRITEPROTECT, w, "UFFDIO_WRITEPROTECT");
    }

    /**
     * UFFDIO_COPY {@code len} bytes from {@code src} to the registered range at {@code dst}
     * (page-aligned), atomically populating the missing pages and waking the faulting threads
     * unless UFFDIO_COPY_MODE_DONTWAKE.
     *
     * @return bytes copied (may be less than len when the kernel answered EAGAIN after a partial
     *     copy: retry the rest), or {@code -EEXIST} if the first page is already populated (a
     *     racing copy won — normal in postcopy), or {@code -EAGAIN} if nothing was copied because
     *     the address space is changing (retry). Other errors throw.
     */
    public long copy(long dst, long src, long len, long mode) {
        Memory m = SCRATCH.get();
        m.setLong(SCRATCH_OPS + UffdioCopy.OFF_DST, dst);
        m.setLong(SCRATCH_OPS + UffdioCopy.OFF_SRC, src);
        m.setLong(SCRATCH_OPS + UffdioCopy.OFF_LEN, len);
        m.setLong(SCRATCH_OPS + UffdioCopy.OFF_MODE, mode);
        m.setLong(SCRATCH_OPS + UffdioCopy.OFF_COPY, 0);
        int rc = LibC.ioctl(fd.get(), UFFDIO_COPY, m.share(SCRATCH_OPS));
        return fillResult(rc, m.getLong(SCRATCH_OPS + UffdioCopy.OFF_COPY), len, "UFFDIO_COPY");
    }

    /** UFFDIO_ZEROPAGE: like {@link #copy} but maps zero pages; same return convention. */
    public long zeropage(long dst, long len, long mode) {
        Memory m = SCRATCH.get();
        m.setLong(SCRATCH_OPS + UffdioZeropage.OFF_RANGE_START, dst);
        m.setLong(SCRATCH_OPS + UffdioZeropage.OFF_RANGE_LEN, len);
        m.setLong(SCRATCH_OPS + UffdioZeropage.OFF_MODE, mode);
        m.setLong(SCRATCH_OPS + UffdioZeropage.OFF_ZEROPAGE, 0);
        int rc = LibC.ioctl(fd.get(), UFFDIO_ZEROPAGE, m.share(SCRATCH_OPS));
        return fillResult(rc, m.getLong(SCRATCH_OPS + UffdioZeropage.OFF_ZEROPAGE), len, "UFFDIO_ZEROPAGE");
    }

    /**
     * UFFDIO_CONTINUE: maps the pages of {@code [start, start + len)} that are already in the page cache of the
     * registered (MINOR) mapping's file, waking their faulting threads unless UFFDIO_CONTINUE_MODE_DONTWAKE. Same
     * return convention as {@link #copy}, and {@code -EFAULT} if the first page is not in the page cache.
     */
    public long continueRange(long start, long len, long mode) {
        Memory m = SCRATCH.get();
        m.setLong(SCRATCH_OPS + UffdioContinue.OFF_RANGE_START, start);
        m.setLong(SCRATCH_OPS + UffdioContinue.OFF_RANGE_LEN, len);
        m.setLong(SCRATCH_OPS + UffdioContinue.OFF_MODE, mode);
        m.setLong(SCRATCH_OPS + UffdioContinue.OFF_MAPPED, 0);
        int rc = LibC.ioctl(fd.get(), UFFDIO_CONTINUE, m.share(SCRATCH_OPS));
        if (rc < 0 && Native.getLastError() == Errno.EFAULT) {
            return -Errno.EFAULT;
        }
        return fillResult(rc, m.getLong(SCRATCH_OPS + UffdioContinue.OFF_MAPPED), len, "UFFDIO_CONTINUE");
    }

    private static long fillResult(int rc, long done, long len, String op) {
        if (rc == 0) {
            return done;
        }
        int errno = Native.getLastError();
        if (errno == Errno.EAGAIN) {
            return done > 0 ? done : -Errno.EAGAIN;
        }
        if (errno == Errno.EEXIST) {
            return -Errno.EEXIST;
        }
        throw new NativeException(op, errno);
    }

    /** UFFDIO_WAKE: wake threads faulting in the range (after copies made with DONTWAKE). */
    public void wake(long start, long len) {
        Memory m = SCRATCH.get();
        m.setLong(SCRATCH_OPS, start);
        m.setLong(SCRATCH_OPS + 8, len);
        NativeException.check(LibC.ioctl(fd.get(), UFFDIO_WAKE, m.share(SCRATCH_OPS)), "UFFDIO_WAKE");
    }

    /**
     * Reads one uffd_msg into {@code out}. Returns false if none is queued (EAGAIN on an
     * O_NONBLOCK fd); blocks otherwise. Allocation-free.
     */
    public boolean readEvent(UffdEvent out) {
        Memory m = SCRATCH.get();
        while (true) {
            long n = LibC.read(fd.get(), m.share(SCRATCH_EVENTS), UffdMsg.SIZE);
            if (n == UffdMsg.SIZE) {
                decode(m, SCRATCH_EVENTS, out);
                return true;
            }
            if (n >= 0) {
                throw new IllegalStateException("short read from userfaultfd: " + n);
            }
            int errno = Native.getLastError();
            if (errno == Errno.EAGAIN) {
                return false;
            }
            if (errno != Errno.EINTR) {
                throw new NativeException("read(userfaultfd)", errno);
            }
        }
    }

    /**
     * Reads up to {@code min(out.length, MAX_BATCH)} queued events with one read(2); returns how
     * many (0 on EAGAIN). The elements of {@code out} must be non-null; they are overwritten.
     */
    public int readEvents(UffdEvent[] out) {
        int max = Math.min(out.length, MAX_BATCH);
        if (max == 0) {
            return 0;
        }
        Memory m = SCRATCH.get();
        while (true) {
            long n = LibC.read(fd.get(), m.share(SCRATCH_EVENTS), (long) UffdMsg.SIZE * max);
            if (n >= 0) {
                if (n % UffdMsg.SIZE != 0) {
                    throw new IllegalStateException("partial uffd_msg read: " + n);
                }
                int count = (int) (n / UffdMsg.SIZE);
                for (int i = 0; i < count; i++) {
                    decode(m, SCRATCH_EVENTS + (long) i * UffdMsg.SIZE, out[i]);
                }
                return count;
            }
            int errno = Native.getLastError();
            if (errno == Errno.EAGAIN) {
                return 0;
            }
            if (errno != Errno.EINTR) {
                throw new NativeException("read(userfaultfd)", errno);
            }
        }
    }

    private static void decode(Memory m, long base, UffdEvent out) {
        out.event = m.getByte(base + UffdMsg.OFF_EVENT) & 0xff;
        if (out.event == UFFD_EVENT_PAGEFAULT) {
            out.flags = m.getLong(base + UffdMsg.OFF_PAGEFAULT_FLAGS);
            out.address = m.getLong(base + UffdMsg.OFF_PAGEFAULT_ADDRESS);
            out.ptid = m.getInt(base + UffdMsg.OFF_PAGEFAULT_PTID);
            out.arg0 = out.arg1 = out.arg2 = 0;
        } else {
            out.flags = out.address = 0;
            out.ptid = 0;
            out.arg0 = m.getLong(base + UffdMsg.OFF_ARG);
            out.arg1 = m.getLong(base + UffdMsg.OFF_ARG + 8);
            out.arg2 = m.getLong(base + UffdMsg.OFF_ARG + 16);
            if (out.event == UFFD_EVENT_FORK) {
                out.arg0 &= 0xffffffffL; // __u32 ufd
                out.arg1 = out.arg2 = 0;
            }
        }
    }

    /** Waits up to {@code timeoutMs} (-1 = forever) for an event; true if readable. EINTR → false. */
    public boolean poll(int timeoutMs) {
        return (pollWith(timeoutMs, -1) & 1) != 0;
    }

    /**
     * Polls this fd and {@code otherFd} (e.g. an {@link EventFd} used to stop the fault loop; -1 to
     * skip) for POLLIN. Returns bit 0 set if this fd is ready (readable, error or hang-up), bit 1
     * if the other fd is; 0 on timeout or EINTR.
     */
    public int pollWith(int timeoutMs, int otherFd) {
        Memory m = SCRATCH.get();
        long p = SCRATCH_POLLFD;
        m.setInt(p, fd.get());
        m.setShort(p + 4, LibC.POLLIN);
        m.setShort(p + 6, (short) 0);
        m.setInt(p + 8, otherFd);
        m.setShort(p + 12, LibC.POLLIN);
        m.setShort(p + 14, (short) 0);
        int rc = LibC.poll(m.share(p), otherFd >= 0 ? 2 : 1, timeoutMs);
        if (rc < 0) {
            int errno = Native.getLastError();
            if (errno == Errno.EINTR) {
                return 0;
            }
            throw new NativeException("poll(userfaultfd)", errno);
        }
        int result = 0;
        if (m.getShort(p + 6) != 0) {
            result |= 1;
        }
        if (otherFd >= 0 && m.getShort(p + 14) != 0) {
            result |= 2;
        }
        return result;
    }

    /**
     * Closes the fd. The kernel then drops the registrations and wakes blocked faulting threads,
     * which retry as ordinary faults (missing shmem pages read as zeros). Idempotent.
     */
    @Override
    public void close() {
        Fd.close(fd.getAndSet(-1), "userfaultfd");
    }

    public boolean isClosed() {
        return fd.get() < 0;
    }
}
