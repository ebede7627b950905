package dev.ferry.process;

import static dev.ferry.linux.UffdIoctls.UFFDIO_COPY_MODE_WP;
import static dev.ferry.linux.UffdIoctls.UFFDIO_REGISTER_MODE_MISSING;
import static dev.ferry.linux.UffdIoctls.UFFDIO_REGISTER_MODE_WP;
import static dev.ferry.linux.UffdIoctls.UFFD_FEATURE_MISSING_SHMEM;
import static dev.ferry.linux.UffdIoctls.UFFD_FEATURE_WP_ASYNC;
import static dev.ferry.linux.UffdIoctls.UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.sun.jna.Memory;
import dev.ferry.linux.FdSnapshot;
import dev.ferry.linux.LibC;
import dev.ferry.linux.MappedMemory;
import dev.ferry.linux.PagemapScanner;
import dev.ferry.linux.UffdEvent;
import dev.ferry.linux.Userfaultfd;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.SortedSet;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@link WriteTracker} on 64 MiB of guest memory in two memfd slots: exact harvests while a writer
 * thread runs, fetch versus fetchAndClear, disable, alias writes, never-touched pages, and a
 * userfaultfd that serves missing-page faults at the same time (as postcopy will).
 */
class WriteTrackerTest {
    static final long MIB = 1 << 20;
    static final long PAGE = GuestMemory.PAGE_SIZE;
    static final long TOTAL = 64 * MIB;
    static final int PAGES = (int) (TOTAL / PAGE);

    private FdSnapshot before;
    private GuestMemory memory;
    private final List<AutoCloseable> toClose = new ArrayList<>();

    @BeforeEach
    void setUp() {
        PagemapTestSupport.assumePagemapScan();
        before = FdSnapshot.take();
        memory = GuestMemory.allocate(TOTAL, 2);
    }

    @AfterEach
    void tearDown() throws Exception {
        if (before == null) {
            return;
        }
        for (int i = toClose.size() - 1; i >= 0; i--) {
            toClose.get(i).close();
        }
        memory.close();
        FdSnapshot after = FdSnapshot.take();
        assertEquals(List.of(), after.leakedSince(before), "fds/mappings left open");
        assertEquals(pagemapFds(before), pagemapFds(after), "pagemap fds left open");
    }

    private WriteTracker ownTracker() {
        WriteTracker t = WriteTracker.withOwnUserfaultfd(memory);
        toClose.add(t);
        return t;
    }

    @Test
    void quiescentHarvestIsExactlyThePagesWritten() {
        WriteTracker tracker = ownTracker();
        tracker.enable();
        assertTrue(tracker.enabled());
        assertSamePages(setOf(), pages(tracker.fetchAndClear()), "nothing written since enable");

        SortedSet<Long> written = randomPages(new Random(1), 700);
        // the edges: first and last page of each slot
        long slot1 = memory.regions().get(1).guestPhysAddr() / PAGE;
        written.addAll(List.of(0L, slot1 - 1, slot1, (long) PAGES - 1));
        written.forEach(p -> write(p, 7));
        assertSamePages(written, pages(tracker.fetchAndClear()), "the pages written");
        assertSamePages(setOf(), pages(tracker.fetchAndClear()), "the harvest re-protected exactly those pages");

        SortedSet<Long> again = new TreeSet<>(written.headSet(written.first() + PAGES / 3));
        again.forEach(p -> write(p, 8)); // pages written before: re-protected, so counted again
        assertSamePages(again, pages(tracker.fetchAndClear()), "re-written pages count again");
        assertSamePages(setOf(), pages(tracker.fetchAndClear()), "then nothing");
    }

    /**
     * A writer thread writes 50 rounds of random pages (rounds overlap, so pages are re-written
     * after a harvest re-protected them) while this thread harvests as fast as it can, so harvests
     * fall inside rounds and writes race the scans. Each write and each harvest is timestamped with
     * System.nanoTime() before and after, and every page is checked against exactly what the kernel
     * can promise, whatever the interleaving:
     *
     * <ul>
     *   <li>no miss: a write is reported by a harvest that ended after the write started, no later
     *       than the first harvest that started after the write ended;
     *   <li>no extra: a page reported by harvest k was written in a write that started before k
     *       ended and ended after the previous harvest reporting that page started (a write that
     *       ended before that harvest began was reported, and cleared, by it).
     * </ul>
     * The union of all harvests must equal the set of pages written.
     */
    @Test
    void harvestsWhileAWriterRunsMissNothingAndAddNothing() throws Exception {
        WriteTracker tracker = ownTracker();
        tracker.enable();
        Random rnd = new Random(42);
        int rounds = 50;
        List<long[]> plan = new ArrayList<>();
        int totalWrites = 0;
        for (int r = 0; r < rounds; r++) {
            long[] round = randomPages(rnd, 1 + rnd.nextInt(600)).stream().mapToLong(Long::longValue).toArray();
            shuffle(round, rnd);
            plan.add(round);
            totalWrites += round.length;
        }
        long[] wPage = new long[totalWrites];
        long[] wStart = new long[totalWrites];
        long[] wEnd = new long[totalWrites];

        CompletableFuture<Void> writer = CompletableFuture.runAsync(() -> {
            int k = 0;
            for (int r = 0; r < rounds; r++) {
                for (long page : plan.get(r)) {
                    wPage[k] = page;
                    wStart[k] = System.nanoTime();
                    write(page, r);
                    wEnd[k] = System.nanoTime();
                    k++;
                    if ((k & 31) == 0) {
                        LockSupport.parkNanos(50_000); // spread each round over several harvests
                    }
                }
                LockSupport.parkNanos(200_000 + (r % 7) * 100_000);
            }
        }, runnable -> new Thread(runnable, "tracked-writer").start());

        List<long[]> harvested = new ArrayList<>(); // page numbers per harvest
        List<long[]> window = new ArrayList<>(); // {start, end} nanoTime per harvest
        int harvestsDuringWrites = 0;
        while (!writer.isDone()) {
            long s = System.nanoTime();
            DirtyBitmap d = tracker.fetchAndClear();
            long e = System.nanoTime();
            harvested.add(pageArray(d));
            window.add(new long[] {s, e});
            harvestsDuringWrites++;
            LockSupport.parkNanos(300_000);
        }
        writer.get(30, TimeUnit.SECONDS);
        long s = System.nanoTime();
        harvested.add(pageArray(tracker.fetchAndClear())); // after the writer stopped: must catch the rest
        window.add(new long[] {s, System.nanoTime()});
        assertTrue(harvestsDuringWrites >= 10, "harvests while writing: " + harvestsDuringWrites);

        // per page: its writes (in order: one writer) and the harvests that reported it (in order)
        Map<Long, List<Integer>> writesOf = new HashMap<>();
        for (int k = 0; k < totalWrites; k++) {
            writesOf.computeIfAbsent(wPage[k], p -> new ArrayList<>()).add(k);
        }
        Map<Long, List<Integer>> reportsOf = new HashMap<>();
        for (int h = 0; h < harvested.size(); h++) {
            for (long p : harvested.get(h)) {
                reportsOf.computeIfAbsent(p, x -> new ArrayList<>()).add(h);
            }
        }
        assertSamePages(new TreeSet<>(writesOf.keySet()), new TreeSet<>(reportsOf.keySet()), "union of the harvests");
        int racing = 0; // writes that overlapped a harvest: the point of this test
        for (int k = 0; k < totalWrites; k++) {
            for (long[] w : window) {
                if (wStart[k] < w[1] && wEnd[k] > w[0]) {
                    racing++;
                    break;
                }
            }
        }
        assertTrue(racing > 0, "no write overlapped a harvest");

        List<String> errors = new ArrayList<>();
        for (Map.Entry<Long, List<Integer>> entry : reportsOf.entrySet()) {
            long page = entry.getKey();
            List<Integer> writes = writesOf.get(page);
            List<Integer> reports = entry.getValue();
            for (int w : writes) { // no miss
                int deadline = firstHarvestStartingAfter(window, wEnd[w]);
                boolean reported = reports.stream().anyMatch(h -> window.get(h)[1] > wStart[w] && h <= deadline);
                if (!reported) {
                    errors.add("page " + page + " write #" + w + " not reported by harvest " + deadline + " or an earlier one"
                            + " ending after the write; reported by " + reports);
                }
            }
            for (int i = 0; i < reports.size(); i++) { // no extra
                int h = reports.get(i);
                long after = i == 0 ? Long.MIN_VALUE : window.get(reports.get(i - 1))[0];
                boolean justified = writes.stream().anyMatch(w -> wStart[w] < window.get(h)[1] && wEnd[w] > after);
                if (!justified) {
                    errors.add("page " + page + " reported by harvest " + h + " without a write since harvest "
                            + (i == 0 ? "enable" : reports.get(i - 1)));
                }
            }
        }
        assertTrue(errors.isEmpty(), errors.size() + " violations over " + totalWrites + " writes and " + harvested.size()
                + " harvests:\n  " + String.join("\n  ", errors.subList(0, Math.min(20, errors.size()))));
        assertSamePages(setOf(), pages(tracker.fetchAndClear()), "quiet once the writer stopped");
    }

    @Test
    void fetchReportsWithoutClearing() {
        WriteTracker tracker = ownTracker();
        tracker.enable();
        SortedSet<Long> a = randomPages(new Random(3), 200);
        a.forEach(p -> write(p, 1));
        assertSamePages(a, pages(tracker.fetch()), "fetch");
        assertSamePages(a, pages(tracker.fetch()), "fetch leaves the pages written");
        SortedSet<Long> b = randomPages(new Random(4), 200);
        b.forEach(p -> write(p, 2));
        SortedSet<Long> both = new TreeSet<>(a);
        both.addAll(b);
        assertSamePages(both, pages(tracker.fetch()), "each fetch a superset of the last");
        assertSamePages(both, pages(tracker.fetchAndClear()), "fetchAndClear after fetches");
        assertSamePages(setOf(), pages(tracker.fetch()), "cleared");
    }

    @Test
    void afterDisableWritesAreNotReportedAndNothingIsProtected() {
        WriteTracker tracker = ownTracker();
        tracker.enable();
        tracker.disable();
        tracker.disable();
        assertFalse(tracker.enabled());
        randomPages(new Random(5), 300).forEach(p -> write(p, 3));
        assertEquals("write tracking is not enabled", assertThrows(IllegalStateException.class, tracker::fetch).getMessage());
        assertThrows(IllegalStateException.class, tracker::fetchAndClear);

        // no page is write-protected any more: every page of both slots reads as written
        try (PagemapScanner scanner = PagemapScanner.open()) {
            for (MemoryRegion r : memory.regions()) {
                long a = r.mapping().address();
                assertEquals(r.pages(), scanner.scanWritten(a, a + r.size(), false, (s, e, c) -> {}), "slot " + r.slot());
            }
        }

        tracker.enable(); // re-arming forgets what was written while disabled
        assertSamePages(setOf(), pages(tracker.fetchAndClear()), "re-arming forgets what was written while disabled");
        SortedSet<Long> c = randomPages(new Random(6), 50);
        c.forEach(p -> write(p, 4));
        assertSamePages(c, pages(tracker.fetchAndClear()), "tracked again after re-enabling");
    }

    @Test
    void writesThroughAnAliasMappingAreNotCounted() {
        WriteTracker tracker = ownTracker();
        tracker.enable();
        MemoryRegion slot0 = memory.regions().get(0);
        try (MappedMemory alias = slot0.mapping().alias()) {
            for (long p = 0; p < 64; p++) {
                alias.pointer().setLong(p * PAGE, 0x5a5a);
            }
            assertEquals(0x5a5a, slot0.view().getLong((int) (5 * PAGE)), "the guest sees the VMM's write");
            assertSamePages(setOf(), pages(tracker.fetchAndClear()), "VMM writes through the alias are not counted");
            write(5, 9);
            assertSamePages(setOf(5L), pages(tracker.fetchAndClear()), "guest writes through the registered mapping are");
        }
    }

    @Test
    void neverTouchedPagesAreNotReportedUntilFirstWritten() {
        assertEquals(0, DirtyBitmap.populated(memory).count(), "fresh memfds");
        WriteTracker tracker = ownTracker();
        tracker.enable();
        assertSamePages(setOf(), pages(tracker.fetchAndClear()), "arming absorbed the unpopulated pages");
        // reads populate pages (shmem) but write nothing
        long sum = 0;
        for (long p = 1000; p < 1100; p++) {
            sum += read(p);
        }
        assertEquals(0, sum);
        assertSamePages(setOf(), pages(tracker.fetchAndClear()), "reads are not writes");
        // first writes: next to read pages, alone in an untouched 2 MiB page table, at a slot's end
        SortedSet<Long> first = new TreeSet<>(List.of(1050L, 1200L, 5000L, 5001L, (long) PAGES / 2 - 1, (long) PAGES - 1));
        first.forEach(p -> write(p, 1));
        assertSamePages(first, pages(tracker.fetchAndClear()), "first writes to never-touched pages");
        assertSamePages(setOf(), pages(tracker.fetchAndClear()), "then nothing");
    }

    /**
     * The arming used on kernels whose scan skips never-touched 2 MiB areas (UFFDIO_WRITEPROTECT,
     * then the scan) is exact too, on fresh memory and on populated, unprotected memory.
     */
    @Test
    void armingWithUffdioWriteprotectFirstIsExactToo() {
        WriteTracker tracker = WriteTracker.withOwnUserfaultfd(memory, true);
        toClose.add(tracker);
        tracker.enable();
        assertSamePages(setOf(), pages(tracker.fetchAndClear()), "nothing written since enable");
        for (long p = 3000; p < 3100; p++) {
            read(p);
        }
        SortedSet<Long> first = new TreeSet<>(List.of(3050L, 6000L, (long) PAGES - 1));
        first.forEach(p -> write(p, 1));
        assertSamePages(first, pages(tracker.fetchAndClear()), "first writes to never-touched pages, after reads");

        tracker.disable();
        randomPages(new Random(8), 2000).forEach(p -> write(p, 2)); // populated and unprotected now
        tracker.enable();
        assertSamePages(setOf(), pages(tracker.fetchAndClear()), "re-armed");
        SortedSet<Long> later = randomPages(new Random(9), 300);
        later.forEach(p -> write(p, 3));
        assertSamePages(later, pages(tracker.fetchAndClear()), "writes after re-arming");
    }

    /**
     * The VM's userfaultfd serves missing-page faults (postcopy) and tracks writes at once. A page
     * placed with UFFDIO_COPY_MODE_WP is not a write; the guest's first store to it is. A page placed
     * without the flag counts as written. disable() keeps the registration: faults still arrive.
     */
    @Test
    void missingFaultsServedWithCopyModeWpAreNotWrites() throws Exception {
        Userfaultfd uffd = Userfaultfd.open(LibC.O_CLOEXEC | LibC.O_NONBLOCK,
                UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
        toClose.add(uffd); // closed after the tracker: wakes a faulting thread if the test fails midway
        for (MemoryRegion r : memory.regions()) {
            uffd.register(r.mapping().address(), r.size(), UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
        }
        WriteTracker tracker = new WriteTracker(memory, uffd);
        toClose.add(tracker);
        tracker.enable();
        assertSamePages(setOf(), pages(tracker.fetchAndClear()), "nothing written since enable");

        try (Memory src = new Memory(PAGE)) {
            src.setLong(0, 0x1111);
            // a read of a missing page: served write-protected, so not a write
            long p = 10;
            CompletableFuture<Long> reader = async(() -> read(p));
            serveFault(uffd, p, src, UFFDIO_COPY_MODE_WP);
            assertEquals(0x1111, reader.get(5, TimeUnit.SECONDS));
            assertSamePages(setOf(), pages(tracker.fetchAndClear()), "a page placed with UFFDIO_COPY_MODE_WP is not written");
            write(p, 2);
            assertSamePages(setOf(p), pages(tracker.fetchAndClear()), "the guest's first store to it is");

            // a store to a missing page (slot 1): served write-protected, then the retried store counts
            long q = PAGES - 3;
            CompletableFuture<Long> writer = async(() -> {
                write(q, 5);
                return 0L;
            });
            serveFault(uffd, q, src, UFFDIO_COPY_MODE_WP);
            writer.get(5, TimeUnit.SECONDS);
            assertSamePages(setOf(q), pages(tracker.fetchAndClear()), "a store to a missing page, served with UFFDIO_COPY_MODE_WP and retried");

            // a page placed without UFFDIO_COPY_MODE_WP counts as written
            long r = 20;
            CompletableFuture<Long> reader2 = async(() -> read(r));
            serveFault(uffd, r, src, 0);
            reader2.get(5, TimeUnit.SECONDS);
            assertSamePages(setOf(r), pages(tracker.fetchAndClear()), "a page placed by UFFDIO_COPY without MODE_WP counts as written");

            // disable() leaves the VM's registration: missing faults still arrive
            tracker.disable();
            long t = 30;
            CompletableFuture<Long> reader3 = async(() -> read(t));
            serveFault(uffd, t, src, 0);
            assertEquals(0x1111, reader3.get(5, TimeUnit.SECONDS));
        }
    }

    @Test
    void refusesAUserfaultfdWithoutAsyncWriteProtectOrUnregisteredMemory() {
        try (Userfaultfd sync = Userfaultfd.open(LibC.O_CLOEXEC | LibC.O_NONBLOCK, UFFD_FEATURE_WP_HUGETLBFS_SHMEM)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new WriteTracker(memory, sync));
            assertTrue(e.getMessage().startsWith("the userfaultfd was opened without UFFD_FEATURE_WP_ASYNC:"), e.getMessage());
        }
        try (Userfaultfd async = Userfaultfd.open(LibC.O_CLOEXEC | LibC.O_NONBLOCK, WriteTracker.REQUIRED_FEATURES)) {
            MemoryRegion slot0 = memory.regions().get(0);
            async.register(slot0.mapping().address(), slot0.size(), UFFDIO_REGISTER_MODE_WP); // slot 1 left out
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new WriteTracker(memory, async));
            assertTrue(e.getMessage().startsWith("guest memory slot 1 (0x2000000 bytes at 0x"), e.getMessage());
            assertTrue(e.getMessage().endsWith("is not registered UFFDIO_REGISTER_MODE_WP on a userfaultfd with UFFD_FEATURE_WP_ASYNC"),
                    e.getMessage());
        }
    }

    @Test
    void closeDisablesAndIsIdempotent() {
        WriteTracker tracker = WriteTracker.withOwnUserfaultfd(memory);
        tracker.enable();
        tracker.close();
        tracker.close();
        assertFalse(tracker.enabled());
        assertEquals("WriteTracker is closed", assertThrows(IllegalStateException.class, tracker::enable).getMessage());
        assertThrows(IllegalStateException.class, tracker::fetchAndClear);
        write(3, 1); // unregistered and unprotected: an ordinary store
    }

    // ---- helpers ----------------------------------------------------------------------------------

    private static <T> CompletableFuture<T> async(Supplier<T> body) {
        return CompletableFuture.supplyAsync(body, runnable -> new Thread(runnable, "faulting-guest").start());
    }

    /** Waits for the missing fault on {@code page} and places {@code src} there with UFFDIO_COPY. */
    private void serveFault(Userfaultfd uffd, long page, Memory src, long mode) {
        UffdEvent ev = new UffdEvent();
        assertTrue(uffd.poll(5000), "fault on page " + page + " within 5 s");
        assertTrue(uffd.readEvent(ev));
        long host = host(page);
        assertTrue(ev.isPagefault(), ev.toString());
        assertEquals(host, ev.address, "fault address");
        assertEquals(PAGE, uffd.copy(host, Memory.nativeValue(src), PAGE, mode));
    }

    private long host(long page) {
        return memory.regionOf(page * PAGE).hostAddress(page * PAGE);
    }

    /** A store through the registered mapping: what a guest does. */
    private void write(long page, long value) {
        long gpa = page * PAGE;
        MemoryRegion r = memory.regionOf(gpa);
        r.view().putLong((int) (gpa - r.guestPhysAddr()) + 64, value);
    }

    private long read(long page) {
        long gpa = page * PAGE;
        MemoryRegion r = memory.regionOf(gpa);
        return r.view().getLong((int) (gpa - r.guestPhysAddr()));
    }

    private static SortedSet<Long> randomPages(Random rnd, int count) {
        SortedSet<Long> s = new TreeSet<>();
        while (s.size() < count) {
            s.add((long) rnd.nextInt(PAGES));
        }
        return s;
    }

    private static void shuffle(long[] a, Random rnd) {
        for (int i = a.length - 1; i > 0; i--) {
            int j = rnd.nextInt(i + 1);
            long t = a[i];
            a[i] = a[j];
            a[j] = t;
        }
    }

    /** Set equality that names the missing and extra pages (a few of each) instead of printing both sets. */
    private static void assertSamePages(SortedSet<Long> expected, SortedSet<Long> actual, String what) {
        SortedSet<Long> missing = new TreeSet<>(expected);
        missing.removeAll(actual);
        SortedSet<Long> extra = new TreeSet<>(actual);
        extra.removeAll(expected);
        if (!missing.isEmpty() || !extra.isEmpty()) {
            fail(what + ": " + expected.size() + " pages expected, " + actual.size() + " reported; missing "
                    + missing.size() + " " + first(missing) + ", extra " + extra.size() + " " + first(extra));
        }
    }

    private static List<Long> first(SortedSet<Long> s) {
        return s.stream().limit(12).toList();
    }

    private static SortedSet<Long> pages(DirtyBitmap d) {
        SortedSet<Long> s = new TreeSet<>();
        d.forEachDirtyPage(gpa -> s.add(gpa / PAGE));
        return s;
    }

    private static long[] pageArray(DirtyBitmap d) {
        return pages(d).stream().mapToLong(Long::longValue).toArray();
    }

    private static int firstHarvestStartingAfter(List<long[]> window, long t) {
        for (int h = 0; h < window.size(); h++) {
            if (window.get(h)[0] > t) {
                return h;
            }
        }
        return fail("no harvest started after " + t + ": the final harvest runs after the writer stopped");
    }

    private static long pagemapFds(FdSnapshot s) {
        return s.fds().values().stream().filter(t -> t.endsWith("/pagemap")).count();
    }

    private static SortedSet<Long> setOf(Long... pages) {
        return new TreeSet<>(List.of(pages));
    }
}
