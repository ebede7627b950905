package dev.ferry.process;

import static dev.ferry.linux.UffdIoctls.UFFDIO_REGISTER_MODE_WP;
import static dev.ferry.linux.UffdIoctls.UFFDIO_WRITEPROTECT_MODE_WP;
import static dev.ferry.linux.UffdIoctls.UFFD_FEATURE_WP_ASYNC;
import static dev.ferry.linux.UffdIoctls.UFFD_FEATURE_WP_HUGETLBFS_SHMEM;

import dev.ferry.linux.Errno;
import dev.ferry.linux.LibC;
import dev.ferry.linux.MappedMemory;
import dev.ferry.linux.NativeException;
import dev.ferry.linux.PagemapScanner;
import dev.ferry.linux.Userfaultfd;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.DirtyTracker;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Dirty-page tracking for a process guest (guest code running in host threads over the memfd
 * mappings of {@link GuestMemory}): userfaultfd asynchronous write-protect plus PAGEMAP_SCAN, the
 * way CRIU tracks a live process.
 *
 * <p>Every region mapping is registered UFFDIO_REGISTER_MODE_WP on a userfaultfd opened with
 * UFFD_FEATURE_WP_ASYNC. The kernel resolves a write to a protected page by itself (no message, no
 * handler thread; one minor fault for the first write to a page, nothing for later ones) and the
 * page then reads PAGE_IS_WRITTEN in /proc/self/pagemap. A harvest is one PAGEMAP_SCAN per region that
 * returns the written pages and, for {@link #fetchAndClear()}, protects them again, each page
 * atomically with reading it: a write racing a harvest is reported by that harvest or the next one,
 * never lost and never twice.
 *
 * <h2>What counts as a write</h2>
 * Only stores through the registered mapping ({@code region.mapping()}), from any thread. Not
 * counted: writes through another mapping of the same memfd ({@link dev.ferry.linux.MappedMemory#alias()}),
 * writes into the memfd with pwrite(2), pages punched with MADV_REMOVE. That is how the VMM writes
 * guest memory without being counted: through an alias. A page placed by UFFDIO_COPY counts as
 * written unless the copy used UFFDIO_COPY_MODE_WP (which is what postcopy uses). Pages never
 * touched are not reported; the first write to one is.
 *
 * <h2>Arming never-touched memory</h2>
 * To PAGEMAP_SCAN an unpopulated page of a write-protect-registered range reads as written until
 * it carries a uffd-wp marker, so the arming pass reports every such page and marks it. Kernels
 * without the fix "fs/proc/task_mmu: fix PAGEMAP_SCAN written state for PMD holes" (6.18 here has
 * it) skip 2 MiB areas that have no page table yet, and a first read or write there would then
 * report the whole area once. On such kernels (found by a one-time probe) {@link #enable()} first
 * write-protects every region with UFFDIO_WRITEPROTECT, which installs the markers everywhere.
 *
 * <h2>Ownership</h2>
 * The userfaultfd belongs to the VM, which may also serve postcopy's missing-page faults on it
 * (registered MISSING | WP); this class only write-protects and un-protects through it, and leaves
 * the registration alone. {@link #withOwnUserfaultfd} makes a tracker that opens, registers and
 * closes a userfaultfd of its own. The tracker owns its /proc/self/pagemap fd: {@link #close()} it.
 *
 * <p>Thread-safe: the methods are synchronized, as in the KVM dirty log.
 */
public final class WriteTracker implements DirtyTracker, AutoCloseable {
    /** UFFD_FEATURE_* the userfaultfd must have been opened with. */
    public static final long REQUIRED_FEATURES = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;

    private static volatile Boolean scanArmsHoles; // see scanArmsHoles()

    private final GuestMemory memory;
    private final Userfaultfd uffd;
    private final boolean ownsUffd;
    private final PagemapScanner scanner;
    private final boolean protectBeforeArming;
    private final Collector collector = new Collector(); // reused: a harvest allocates only its bitmap
    // guarded by this
    private boolean enabled;
    private boolean closed;

    /**
     * A tracker over {@code memory} on a userfaultfd the caller opened with {@link #REQUIRED_FEATURES}
     * (and possibly UFFD_FEATURE_MISSING_SHMEM) and on which it registered every region mapping with
     * a mode including UFFDIO_REGISTER_MODE_WP. Tracking starts with {@link #enable()}.
     *
     * @throws IllegalArgumentException if the userfaultfd lacks a required feature or a region is
     *     not registered for asynchronous write-protect
     */
    public WriteTracker(GuestMemory memory, Userfaultfd uffd) {
        this(memory, uffd, false, !scanArmsHoles());
    }

    /** {@code protectBeforeArming}: UFFDIO_WRITEPROTECT before the arming scan (tests force it). */
    WriteTracker(GuestMemory memory, Userfaultfd uffd, boolean ownsUffd, boolean protectBeforeArming) {
        this.memory = Objects.requireNonNull(memory, "memory");
        this.uffd = Objects.requireNonNull(uffd, "uffd");
        this.ownsUffd = ownsUffd;
        this.protectBeforeArming = protectBeforeArming;
        long missing = REQUIRED_FEATURES & ~uffd.requestedFeatures();
        if (missing != 0) {
            throw new IllegalArgumentException("the userfaultfd was opened without " + featureNames(missing)
                    + ": write tracking needs UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_HUGETLBFS_SHMEM"
                    + " (without WP_ASYNC a write to a protected page would wait for a fault handler)");
        }
        this.scanner = PagemapScanner.open();
        try {
            for (MemoryRegion r : memory.regions()) {
                checkRegistered(r);
            }
        } catch (RuntimeException e) {
            scanner.close();
            throw e;
        }
    }

    /**
     * A tracker with a userfaultfd of its own, for tests and standalone use: opens one with
     * {@link #REQUIRED_FEATURES}, registers every region UFFDIO_REGISTER_MODE_WP, and closes it in
     * {@link #close()}. A VM that also serves missing-page faults opens one userfaultfd for both
     * and uses the constructor instead.
     */
    public static WriteTracker withOwnUserfaultfd(GuestMemory memory) {
        return withOwnUserfaultfd(memory, !scanArmsHoles());
    }

    static WriteTracker withOwnUserfaultfd(GuestMemory memory, boolean protectBeforeArming) {
        Userfaultfd uffd = Userfaultfd.open(LibC.O_CLOEXEC | LibC.O_NONBLOCK, REQUIRED_FEATURES);
        try {
            for (MemoryRegion r : memory.regions()) {
                uffd.register(r.mapping().address(), r.size(), UFFDIO_REGISTER_MODE_WP);
            }
            return new WriteTracker(memory, uffd, true, protectBeforeArming);
        } catch (RuntimeException e) {
            uffd.close();
            throw e;
        }
    }

    /**
     * Arms tracking: one scan-and-reprotect pass over every region, its result thrown away
     * (preceded by UFFDIO_WRITEPROTECT on kernels whose scan skips never-touched 2 MiB areas, see
     * the class comment). From here on every page written through the registered mappings is
     * reported by the next {@link #fetchAndClear()}. No-op when enabled.
     */
    @Override
    public synchronized void enable() {
        checkOpen();
        if (enabled) {
            return;
        }
        for (MemoryRegion r : memory.regions()) {
            long start = start(r);
            if (protectBeforeArming) {
                uffd.writeprotect(start, r.size(), UFFDIO_WRITEPROTECT_MODE_WP);
            }
            scanner.reprotect(start, start + r.size());
        }
        enabled = true;
    }

    /**
     * Stops tracking: removes the write protection of every region (UFFDIO_WRITEPROTECT, mode 0)
     * so the guest writes at full speed again; the registration stays. No-op when not enabled, and
     * nothing to undo if the VM already closed the userfaultfd (that drops the protection too).
     */
    @Override
    public synchronized void disable() {
        if (!enabled) {
            return;
        }
        if (!uffd.isClosed()) {
            for (MemoryRegion r : memory.regions()) {
                if (!r.mapping().isClosed()) {
                    uffd.writeprotect(r.mapping().address(), r.size(), 0);
                }
            }
        }
        enabled = false;
    }

    @Override
    public synchronized boolean enabled() {
        return enabled;
    }

    /**
     * Pages written since the previous harvest (or {@link #enable()}), write-protecting exactly
     * those again (PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, one PAGEMAP_SCAN per region).
     */
    @Override
    public synchronized DirtyBitmap fetchAndClear() {
        return harvest(true);
    }

    /** Pages written since the previous harvest, leaving them written (PM_SCAN_CHECK_WPASYNC only). */
    @Override
    public synchronized DirtyBitmap fetch() {
        return harvest(false);
    }

    private DirtyBitmap harvest(boolean reprotect) {
        checkOpen();
        if (!enabled) {
            throw new IllegalStateException("write tracking is not enabled");
        }
        DirtyBitmap bitmap = DirtyBitmap.empty(memory);
        try {
            for (MemoryRegion r : memory.regions()) {
                long start = start(r);
                collector.target(bitmap, start, r.guestPhysAddr());
                scanner.scanWritten(start, start + r.size(), reprotect, collector);
            }
        } finally {
            collector.target(null, 0, 0);
        }
        return bitmap;
    }

    /** Disables tracking, closes the pagemap fd and, for {@link #withOwnUserfaultfd}, the userfaultfd. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        try {
            disable();
        } finally {
            closed = true;
            scanner.close();
            if (ownsUffd) {
                uffd.close();
            }
        }
    }

    private void checkRegistered(MemoryRegion r) {
        long start = start(r);
        try {
            // read-only: without PM_SCAN_WP_MATCHING nothing changes, and CHECK_WPASYNC fails with EPERM
            // unless the whole range is registered WP on a WP_ASYNC userfaultfd
            scanner.scanWritten(start, start + r.size(), false, (s, e, c) -> {});
        } catch (NativeException e) {
            if (e.is(Errno.EPERM)) {
                throw new IllegalArgumentException(String.format("guest memory slot %d (0x%x bytes at 0x%x) is not registered"
                        + " UFFDIO_REGISTER_MODE_WP on a userfaultfd with UFFD_FEATURE_WP_ASYNC", r.slot(), r.size(), start), e);
            }
            throw e;
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("WriteTracker is closed");
        }
    }

    private static long start(MemoryRegion r) {
        if (r.mapping().isClosed()) {
            throw new IllegalStateException("guest memory slot " + r.slot() + " is unmapped");
        }
        return r.mapping().address();
    }

    private static String featureNames(long features) {
        List<String> names = new ArrayList<>();
        if ((features & UFFD_FEATURE_WP_ASYNC) != 0) {
            names.add("UFFD_FEATURE_WP_ASYNC");
        }
        if ((features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) != 0) {
            names.add("UFFD_FEATURE_WP_HUGETLBFS_SHMEM");
        }
        return String.join(" and ", names);
    }

    /**
     * Whether this kernel's arming scan marks never-touched 2 MiB areas. Probed once per process: on
     * a fresh memfd mapping, which has no page table at all, a kernel with the fix reports (and
     * marks) every page, one without it reports none. A race makes two probes, which is harmless.
     */
    private static boolean scanArmsHoles() {
        Boolean known = scanArmsHoles;
        if (known == null) {
            long size = 4L << 20; // holds at least one whole 2 MiB area wherever it is mapped
            try (MappedMemory m = MappedMemory.createShared("ferry-wp-hole-probe", size);
                    Userfaultfd u = Userfaultfd.open(LibC.O_CLOEXEC | LibC.O_NONBLOCK, REQUIRED_FEATURES);
                    PagemapScanner s = PagemapScanner.open(16)) {
                u.register(m.address(), size, UFFDIO_REGISTER_MODE_WP);
                known = s.reprotect(m.address(), m.address() + size) == size / GuestMemory.PAGE_SIZE;
            }
            scanArmsHoles = known;
        }
        return known;
    }

    /** Marks the regions a scan reports in a bitmap, translating host addresses to guest-physical ones. */
    private static final class Collector implements PagemapScanner.RegionSink {
        private DirtyBitmap bitmap;
        private long hostBase;
        private long gpaBase;

        void target(DirtyBitmap bitmap, long hostBase, long gpaBase) {
            this.bitmap = bitmap;
            this.hostBase = hostBase;
            this.gpaBase = gpaBase;
        }

        @Override
        public void region(long start, long end, long categories) {
            bitmap.markRange(gpaBase + (start - hostBase), (end - start) / GuestMemory.PAGE_SIZE);
        }
    }
}
