package dev.ferry.linux;

import com.sun.jna.Native;
import com.sun.jna.Pointer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * An mmap'ed region, usually guest RAM backed by a memfd (shmem) so that a second mapping of the
 * same pages can be made ({@link #alias()}): postcopy registers userfaultfd on the guest-visible
 * mapping and fills pages via UFFDIO_COPY, while migration code reads/writes through the alias.
 *
 * <p>{@link #close()} unmaps (and closes the memfd if this mapping owns it). Accessing the
 * pointer or a {@link #buffer} view afterwards crashes the JVM, so close only after every user
 * (vCPUs included: delete the KVM memory slot first) is done.
 */
public final class MappedMemory implements AutoCloseable {
    private final Pointer pointer;
    private final long size;
    private final int fd;
    private final boolean ownsFd;
    private final AtomicBoolean closed = new AtomicBoolean();

    private MappedMemory(Pointer pointer, long size, int fd, boolean ownsFd) {
        this.pointer = pointer;
        this.size = size;
        this.fd = fd;
        this.ownsFd = ownsFd;
    }

    /**
     * memfd_create(name, MFD_CLOEXEC) + ftruncate(size) + mmap(PROT_READ | PROT_WRITE,
     * MAP_SHARED | MAP_NORESERVE). Pages are allocated on first touch; the mapping owns the fd.
     */
    public static MappedMemory createShared(String name, long size) {
        requirePositive(size);
        int fd = NativeException.check(LibC.memfd_create(name, LibC.MFD_CLOEXEC), "memfd_create(" + name + ")");
        try {
            NativeException.check(LibC.ftruncate(fd, size), "ftruncate(memfd)");
            Pointer p = mapOrThrow(size, LibC.MAP_SHARED | LibC.MAP_NORESERVE, fd, "mmap(memfd)");
            return new MappedMemory(p, size, fd, true);
        } catch (RuntimeException e) {
            LibC.close(fd);
            throw e;
        }
    }

    /**
     * As {@link #createShared}, mapped at exactly {@code address} (MAP_FIXED), which must lie in a range
     * the caller reserved (see {@link #reserve}): this is how guest memory gets one contiguous host range.
     */
    public static MappedMemory createSharedAt(String name, long size, long address) {
        requirePositive(size);
        int fd = NativeException.check(LibC.memfd_create(name, LibC.MFD_CLOEXEC), "memfd_create(" + name + ")");
        try {
            NativeException.check(LibC.ftruncate(fd, size), "ftruncate(memfd)");
            Pointer p = LibC.mmap(new Pointer(address), size, LibC.PROT_READ | LibC.PROT_WRITE,
                    LibC.MAP_SHARED | LibC.MAP_NORESERVE | LibC.MAP_FIXED, fd, 0);
            if (LibC.isMapFailed(p)) {
                throw NativeException.lastError("mmap(memfd, MAP_FIXED)");
            }
            return new MappedMemory(p, size, fd, true);
        } catch (RuntimeException e) {
            LibC.close(fd);
            throw e;
        }
    }

    /**
     * Reserves {@code size} bytes of address space (PROT_NONE, nothing backs it) and returns its
     * address; map into it with {@link #createSharedAt}, and munmap what is left unused.
     */
    public static long reserve(long size) {
        requirePositive(size);
        Pointer p = mapOrThrow0(size, LibC.PROT_NONE, LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS | LibC.MAP_NORESERVE,
                "mmap(reserve)");
        return Pointer.nativeValue(p);
    }

    /** munmap of a range this class does not own (a reservation's unused part). */
    public static void unmap(long address, long size) {
        NativeException.check(LibC.munmap(new Pointer(address), size), "munmap");
    }

    /**
     * A further MAP_SHARED mapping of {@code size} bytes of an existing fd (e.g. the memfd of
     * another MappedMemory). Does not take ownership: close() only unmaps.
     */
    public static MappedMemory mapFd(int fd, long size) {
        requirePositive(size);
        Pointer p = mapOrThrow(size, LibC.MAP_SHARED | LibC.MAP_NORESERVE, fd, "mmap(fd " + fd + ")");
        return new MappedMemory(p, size, fd, false);
    }

    /** As {@link #mapFd}, mapped at exactly {@code address} (MAP_FIXED) inside a range from {@link #reserve}. */
    public static MappedMemory mapFdAt(int fd, long size, long address) {
        requirePositive(size);
        Pointer p = LibC.mmap(new Pointer(address), size, LibC.PROT_READ | LibC.PROT_WRITE,
                LibC.MAP_SHARED | LibC.MAP_NORESERVE | LibC.MAP_FIXED, fd, 0);
        if (LibC.isMapFailed(p)) {
            throw NativeException.lastError("mmap(fd " + fd + ", MAP_FIXED)");
        }
        return new MappedMemory(p, size, fd, false);
    }

    /** Private anonymous memory (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE); fd() is -1. */
    public static MappedMemory anonymous(long size) {
        requirePositive(size);
        Pointer p = mapOrThrow(size, LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS | LibC.MAP_NORESERVE, -1, "mmap(anonymous)");
        return new MappedMemory(p, size, -1, false);
    }

    /** A second mapping of the same memfd pages ({@link #mapFd}); this mapping keeps owning the fd. */
    public MappedMemory alias() {
        if (fd < 0) {
            throw new IllegalStateException("anonymous memory has no fd to alias");
        }
        checkOpen();
        return mapFd(fd, size);
    }

    public Pointer pointer() {
        checkOpen();
        return pointer;
    }

    public long address() {
        return Pointer.nativeValue(pointer);
    }

    public long size() {
        return size;
    }

    /** The backing fd (-1 for anonymous memory). Owned by this object only if it came from createShared. */
    public int fd() {
        return fd;
    }

    /** A direct ByteBuffer view (native byte order) of {@code length} bytes at {@code offset}. */
    public ByteBuffer buffer(long offset, int length) {
        checkRange(offset, length);
        checkOpen();
        return pointer.getByteBuffer(offset, length).order(ByteOrder.nativeOrder());
    }

    /**
     * Frees the backing pages of a range (madvise MADV_REMOVE for shared memory: the memfd pages
     * are punched out, every mapping sees zeros or — with userfaultfd MISSING — faults again;
     * MADV_DONTNEED for anonymous memory).
     */
    public void discard(long offset, long length) {
        checkRange(offset, length);
        checkOpen();
        int advice = fd >= 0 ? LibC.MADV_REMOVE : LibC.MADV_DONTNEED;
        NativeException.check(LibC.madvise(pointer.share(offset), length, advice),
                advice == LibC.MADV_REMOVE ? "madvise(MADV_REMOVE)" : "madvise(MADV_DONTNEED)");
    }

    /**
     * Drops this mapping's page-table entries for a range (MADV_DONTNEED) and nothing else: a shared memfd keeps its
     * pages, which other mappings still see, and the next touch through this mapping faults them back in (or, with
     * userfaultfd MINOR registered here, traps).
     */
    public void dropPageTables(long offset, long length) {
        checkRange(offset, length);
        checkOpen();
        NativeException.check(LibC.madvise(pointer.share(offset), length, LibC.MADV_DONTNEED), "madvise(MADV_DONTNEED)");
    }

    /** munmap, and close the memfd if owned. Idempotent. */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        int rc = LibC.munmap(pointer, size);
        int errno = rc < 0 ? Native.getLastError() : 0;
        if (ownsFd) {
            Fd.close(fd, "memfd");
        }
        if (rc < 0) {
            throw new NativeException("munmap", errno);
        }
    }

    public boolean isClosed() {
        return closed.get();
    }

    @Override
    public String toString() {
        return String.format("MappedMemory{0x%x+0x%x, fd=%d}", address(), size, fd);
    }

    private static Pointer mapOrThrow(long size, int flags, int fd, String op) {
        Pointer p = LibC.mmap(null, size, LibC.PROT_READ | LibC.PROT_WRITE, flags, fd, 0);
        if (LibC.isMapFailed(p)) {
            throw NativeException.lastError(op);
        }
        return p;
    }

    private static Pointer mapOrThrow0(long size, int prot, int flags, String op) {
        Pointer p = LibC.mmap(null, size, prot, flags, -1, 0);
        if (LibC.isMapFailed(p)) {
            throw NativeException.lastError(op);
        }
        return p;
    }

    private static void requirePositive(long size) {
        if (size <= 0) {
            throw new IllegalArgumentException("size must be > 0: " + size);
        }
    }

    private void checkRange(long offset, long length) {
        if (offset < 0 || length < 0 || offset + length > size) {
            throw new IndexOutOfBoundsException("range " + offset + "+" + length + " outside 0.." + size);
        }
    }

    private void checkOpen() {
        if (closed.get()) {
            throw new IllegalStateException("MappedMemory is closed");
        }
    }
}
