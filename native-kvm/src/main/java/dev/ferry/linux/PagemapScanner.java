package dev.ferry.linux;

import static dev.ferry.linux.PagemapIoctls.*;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * ioctl(PAGEMAP_SCAN) on /proc/self/pagemap (Linux 6.7+): finds the pages of a range of this
 * process that have some PAGE_IS_* categories and, with PM_SCAN_WP_MATCHING, write-protects them
 * again in the same call. Over memory registered UFFDIO_REGISTER_MODE_WP on a userfaultfd with
 * UFFD_FEATURE_WP_ASYNC this is a dirty-page tracker: a write to a protected page is resolved by the
 * kernel without a fault message and the page then reads as PAGE_IS_WRITTEN until scanned again
 * (CRIU tracks a live process this way).
 *
 * <p>One scanner holds the pagemap fd and one native buffer (the argument and a vector of
 * {@link #capacity()} page regions); a scan allocates nothing. Calls are serialized on the scanner.
 *
 * <h2>Continuing a scan: the walk_end quirk</h2>
 * The kernel fills its own 512-region buffer, copies it out and walks on until the caller's vector
 * is full or the range is done. {@code walk_end} is only updated when a walk stops early, so after
 * the buffer filled once and the walk then completed, it still holds the earlier stop (seen on 6.18:
 * 513 regions into a 4096-slot vector came back with walk_end 1024 pages into a 16384-page range).
 * Looping until {@code walk_end == end} would report pages twice. So: fewer regions than the vector
 * holds means the walk is complete; only a full vector means continue, and then from the later of
 * walk_end and the end of the last region returned, because walk_end can be stale even then (4096
 * regions into a 4096-slot vector came back with walk_end 1024 pages before the last region's end).
 * Every page below the last region's end was visited, so nothing is skipped.
 */
public final class PagemapScanner implements AutoCloseable {
    public static final String PROC_SELF_PAGEMAP = "/proc/self/pagemap";
    /** Regions per ioctl by default: 96 KiB, enough for 1 % of 1 GiB dirty at random in one call. */
    public static final int DEFAULT_CAPACITY = 4096;

    private static final long PAGE_SIZE = 4096;
    private static final RegionSink DISCARD = (start, end, categories) -> {};

    /** Receives the regions of one scan in ascending address order. */
    @FunctionalInterface
    public interface RegionSink {
        /** Pages [start, end) (host virtual addresses) all have {@code categories} (masked by return_mask). */
        void region(long start, long end, long categories);
    }

    private final int capacity;
    private final Memory buffer; // pm_scan_arg, then capacity x page_region
    private final ByteBuffer arg;
    private final ByteBuffer vec;
    private int fd;

    private PagemapScanner(int fd, int capacity) {
        this.fd = fd;
        this.capacity = capacity;
        this.buffer = new Memory(PmScanArg.SIZE + (long) capacity * PageRegion.SIZE);
        this.arg = buffer.getByteBuffer(0, PmScanArg.SIZE).order(ByteOrder.nativeOrder());
        this.vec = buffer.getByteBuffer(PmScanArg.SIZE, (long) capacity * PageRegion.SIZE).order(ByteOrder.nativeOrder());
        arg.putLong(PmScanArg.OFF_SIZE, PmScanArg.SIZE);
        arg.putLong(PmScanArg.OFF_VEC, Memory.nativeValue(buffer) + PmScanArg.SIZE);
        arg.putLong(PmScanArg.OFF_VEC_LEN, capacity);
        arg.putLong(PmScanArg.OFF_MAX_PAGES, 0); // no limit: a limit would end the walk early
    }

    /** Opens /proc/self/pagemap with a vector of {@link #DEFAULT_CAPACITY} regions. */
    public static PagemapScanner open() {
        return open(DEFAULT_CAPACITY);
    }

    /** Opens /proc/self/pagemap with a vector of {@code capacity} regions per ioctl. */
    public static PagemapScanner open(int capacity) {
        if (capacity < 1 || capacity > (1 << 20)) {
            throw new IllegalArgumentException("capacity must be within 1..2^20 regions, got " + capacity);
        }
        int fd = NativeException.check(LibC.open(PROC_SELF_PAGEMAP, LibC.O_RDONLY | LibC.O_CLOEXEC),
                "open(" + PROC_SELF_PAGEMAP + ")");
        return new PagemapScanner(fd, capacity);
    }

    public int capacity() {
        return capacity;
    }

    /**
     * The written pages of {@code [start, end)}: memory registered UFFDIO_REGISTER_MODE_WP on a
     * UFFD_FEATURE_WP_ASYNC userfaultfd (PM_SCAN_CHECK_WPASYNC: anything else fails with EPERM).
     * With {@code reprotect} (PM_SCAN_WP_MATCHING) the reported pages are write-protected again,
     * each atomically with reading its state, so a write racing the scan is reported now or next time.
     *
     * @return the number of pages reported
     */
    public long scanWritten(long start, long end, boolean reprotect, RegionSink sink) {
        long flags = PM_SCAN_CHECK_WPASYNC | (reprotect ? PM_SCAN_WP_MATCHING : 0);
        return scan(start, end, flags, 0, PAGE_IS_WRITTEN, 0, PAGE_IS_WRITTEN, sink);
    }

    /** {@link #scanWritten} with the regions thrown away: re-arms tracking of the range. */
    public long reprotect(long start, long end) {
        return scanWritten(start, end, true, DISCARD);
    }

    /**
     * One PAGEMAP_SCAN over the page-aligned range {@code [start, end)}, repeated while the vector
     * fills up (see the class comment). The arguments are those of struct pm_scan_arg.
     *
     * @return the number of pages reported
     */
    public synchronized long scan(long start, long end, long flags, long categoryInverted, long categoryMask,
            long categoryAnyofMask, long returnMask, RegionSink sink) {
        if (start % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 || Long.compareUnsigned(start, end) > 0) {
            throw new IllegalArgumentException(String.format("PAGEMAP_SCAN range [0x%x, 0x%x) must be page-aligned with start <= end", start, end));
        }
        if (fd < 0) {
            throw new IllegalStateException("PagemapScanner is closed");
        }
        arg.putLong(PmScanArg.OFF_FLAGS, flags);
        arg.putLong(PmScanArg.OFF_END, end);
        arg.putLong(PmScanArg.OFF_CATEGORY_INVERTED, categoryInverted);
        arg.putLong(PmScanArg.OFF_CATEGORY_MASK, categoryMask);
        arg.putLong(PmScanArg.OFF_CATEGORY_ANYOF_MASK, categoryAnyofMask);
        arg.putLong(PmScanArg.OFF_RETURN_MASK, returnMask);
        long pages = 0;
        long from = start;
        while (from != end) {
            arg.putLong(PmScanArg.OFF_START, from);
            arg.putLong(PmScanArg.OFF_WALK_END, 0);
            int n = LibC.ioctl(fd, PAGEMAP_SCAN, buffer);
            if (n < 0) {
                throw failure(Native.getLastError(), from, end, flags);
            }
            long lastEnd = from;
            for (int i = 0; i < n; i++) {
                int at = i * PageRegion.SIZE;
                long s = vec.getLong(at + PageRegion.OFF_START);
                lastEnd = vec.getLong(at + PageRegion.OFF_END);
                pages += (lastEnd - s) / PAGE_SIZE;
                sink.region(s, lastEnd, vec.getLong(at + PageRegion.OFF_CATEGORIES));
            }
            if (n < capacity) {
                break; // complete, whatever walk_end says
            }
            long next = Math.max(arg.getLong(PmScanArg.OFF_WALK_END), lastEnd);
            if (Long.compareUnsigned(next, from) <= 0 || Long.compareUnsigned(next, end) > 0) {
                throw new IllegalStateException(String.format(
                        "PAGEMAP_SCAN of [0x%x, 0x%x) returned a full vector but walk_end 0x%x, last region end 0x%x",
                        from, end, arg.getLong(PmScanArg.OFF_WALK_END), lastEnd));
            }
            from = next;
        }
        return pages;
    }

    private static NativeException failure(int errno, long start, long end, long flags) {
        String base = "PAGEMAP_SCAN: " + Errno.name(errno) + " (" + errno + "): " + Errno.description(errno);
        String why;
        if (errno == Errno.EPERM && (flags & PM_SCAN_CHECK_WPASYNC) != 0) {
            why = String.format("[0x%x, 0x%x) is not all registered UFFDIO_REGISTER_MODE_WP on a userfaultfd with"
                    + " UFFD_FEATURE_WP_ASYNC", start, end);
        } else if (errno == Errno.ENOTTY) {
            why = "this kernel (" + osRelease() + ") has no PAGEMAP_SCAN (Linux 6.7+)";
        } else {
            why = String.format("range [0x%x, 0x%x), flags 0x%x", start, end, flags);
        }
        return new NativeException("PAGEMAP_SCAN", errno, base + ": " + why);
    }

    /** Closes the pagemap fd. Idempotent. */
    @Override
    public synchronized void close() {
        int f = fd;
        fd = -1;
        Fd.close(f, PROC_SELF_PAGEMAP);
    }

    /**
     * Why write tracking with userfaultfd WP_ASYNC + PAGEMAP_SCAN cannot run here, or empty. Checks
     * the ioctl exists, that userfaultfd offers UFFD_FEATURE_WP_ASYNC and UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
     * and then tracks one write on a small memfd for real. Takes about a millisecond.
     */
    public static Optional<String> unavailableReason() {
        try (PagemapScanner scanner = open(16);
                MappedMemory probe = MappedMemory.createShared("ferry-pagemap-probe", 4 * PAGE_SIZE)) {
            long start = probe.address();
            long end = start + probe.size();
            try {
                scanner.scan(start, end, 0, 0, 0, 0, PAGE_IS_PRESENT, DISCARD);
            } catch (NativeException e) {
                if (e.is(Errno.ENOTTY) || e.is(Errno.EINVAL)) {
                    return Optional.of("the kernel (" + osRelease() + ") lacks PAGEMAP_SCAN on " + PROC_SELF_PAGEMAP
                            + " (Linux 6.7+): " + e.errnoName());
                }
                return Optional.of("PAGEMAP_SCAN fails: " + e.getMessage());
            }
            Optional<String> noUffd = Userfaultfd.unavailableReason();
            if (noUffd.isPresent()) {
                return noUffd;
            }
            long needed = UffdIoctls.UFFD_FEATURE_WP_ASYNC | UffdIoctls.UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
            try (Userfaultfd any = Userfaultfd.open(LibC.O_CLOEXEC | LibC.O_NONBLOCK, 0)) {
                List<String> missing = new ArrayList<>();
                if ((any.features() & UffdIoctls.UFFD_FEATURE_WP_ASYNC) == 0) {
                    missing.add("UFFD_FEATURE_WP_ASYNC (Linux 6.7+)");
                }
                if ((any.features() & UffdIoctls.UFFD_FEATURE_WP_HUGETLBFS_SHMEM) == 0) {
                    missing.add("UFFD_FEATURE_WP_HUGETLBFS_SHMEM (write-protect on shmem, CONFIG_PTE_MARKER_UFFD_WP)");
                }
                if (!missing.isEmpty()) {
                    return Optional.of("userfaultfd on this kernel (" + osRelease() + ") lacks " + String.join(" and ", missing));
                }
            }
            try (Userfaultfd uffd = Userfaultfd.open(LibC.O_CLOEXEC | LibC.O_NONBLOCK, needed)) {
                uffd.register(start, probe.size(), UffdIoctls.UFFDIO_REGISTER_MODE_WP);
                scanner.reprotect(start, end);
                probe.pointer().setLong(2 * PAGE_SIZE, 1);
                long[] seen = {0, 0, 0};
                scanner.scanWritten(start, end, true, (s, e, c) -> {
                    seen[0]++;
                    seen[1] = s;
                    seen[2] = e;
                });
                if (seen[0] != 1 || seen[1] != start + 2 * PAGE_SIZE || seen[2] != start + 3 * PAGE_SIZE) {
                    return Optional.of("PAGEMAP_SCAN does not report exactly the one page written to a write-protected memfd"
                            + " mapping on this kernel (" + osRelease() + ")");
                }
            }
            return Optional.empty();
        } catch (NativeException e) {
            return Optional.of("userfaultfd write-protect tracking fails: " + e.getMessage());
        }
    }

    public static boolean available() {
        return unavailableReason().isEmpty();
    }

    private static String osRelease() {
        try {
            return "Linux " + Files.readString(Path.of("/proc/sys/kernel/osrelease")).trim();
        } catch (IOException e) {
            return "unknown release";
        }
    }
}
