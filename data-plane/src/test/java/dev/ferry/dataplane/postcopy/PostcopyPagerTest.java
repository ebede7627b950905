package dev.ferry.dataplane.postcopy;

import static dev.ferry.dataplane.postcopy.PostcopyFixtures.MIB;
import static dev.ferry.dataplane.postcopy.PostcopyFixtures.PAGE;
import static dev.ferry.dataplane.postcopy.PostcopyFixtures.TOKEN;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.dataplane.TestMemory;
import dev.ferry.dataplane.Transport;
import dev.ferry.dataplane.Transport.Endpoint;
import dev.ferry.dataplane.postcopy.PostcopyFixtures.Sessions;
import dev.ferry.dataplane.postcopy.PostcopyFixtures.Touchers;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.PageHashes;
import dev.ferry.kvm.sys.KvmTestSupport;
import io.grpc.Status;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.LongStream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The destination pager against a real PagerServer: 'vCPU' threads block on missing pages of a memfd mapping exactly
 * like a vCPU does, and must come back with the source's bytes.
 */
@Timeout(30)
class PostcopyPagerTest {
    private final List<AutoCloseable> closeables = new ArrayList<>();
    private GuestMemory source;
    private GuestMemory dest;
    private MemoryPageSource pageSource;
    private Sessions sessions;

    @BeforeEach
    void setUp() {
        KvmTestSupport.assumeUserfaultfd();
        source = PostcopyFixtures.randomMemory(16 * MIB, 2, 42, 10);
        dest = PostcopyFixtures.emptyLike(source);
        pageSource = new MemoryPageSource(source);
        sessions = new Sessions().with(TOKEN, pageSource);
    }

    @AfterEach
    void tearDown() throws Exception {
        Collections.reverse(closeables); // pagers (which wake blocked touchers) before servers before memory
        for (AutoCloseable c : closeables) {
            c.close();
        }
        if (pageSource != null) {
            pageSource.close();
        }
        if (dest != null) {
            dest.close();
        }
        if (source != null) {
            source.close();
        }
    }

    private <T extends AutoCloseable> T closeLater(T c) {
        closeables.add(c);
        return c;
    }

    private Endpoint endpoint(Transport t) throws Exception {
        return closeLater(t.start(PagerServer.service(sessions)));
    }

    private PostcopyPager pager(DirtyBitmap present, PageFetcher fetcher) {
        PostcopyPager p = closeLater(new PostcopyPager(dest, new PageHashes(dest), present, fetcher));
        p.start();
        return p;
    }

    /**
     * Waits until no fault is pending: a toucher returns as soon as UFFDIO_COPY has woken it, a moment before the
     * placing thread updates the pager's counters.
     */
    private static void settle(PostcopyPager pager) throws InterruptedException {
        assertTrue(PostcopyFixtures.eventually(5000, () -> pager.pendingFaults() == 0),
                pager.pendingFaults() + " faults still pending");
    }

    private static long[] randomPages(GuestMemory m, int n, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        long pages = m.totalPages();
        return LongStream.generate(() -> rnd.nextLong(pages) * PAGE).limit(n).toArray();
    }

    // (1) ------------------------------------------------------------------------------------------------------------

    @ParameterizedTest
    @EnumSource(Transport.class)
    void concurrentTouchersSeeTheSourceBytes(Transport transport) throws Exception {
        Endpoint ep = endpoint(transport);
        PostcopyPager pager = pager(DirtyBitmap.empty(dest), new GrpcPageFetcher(ep.channel(), TOKEN));
        long total = dest.totalPages();
        assertEquals(total, pager.missingPages());

        List<long[]> work = new ArrayList<>();
        for (int t = 0; t < 4; t++) {
            work.add(randomPages(source, 300, 100 + t));
        }
        // a few known-zero source pages too: answered zero=true, placed with UFFDIO_ZEROPAGE
        long[] zeros = PostcopyFixtures.pages(source, true);
        assertTrue(zeros.length > 100, "fixture has zero pages");
        work.add(Arrays.copyOf(zeros, 100));
        new Touchers(source, dest, work).start().await(20);
        settle(pager);

        long distinct = work.stream().flatMapToLong(LongStream::of).distinct().count();
        PostcopyPager.Stats s = pager.stats();
        assertEquals(distinct, pager.faultPagesPlaced(), "every touched page placed once, from its fault: " + s
                + ", eexist " + pager.eexistRaces() + ", stale " + pager.staleFaults() + ", error " + pager.lastError());
        assertEquals(distinct, pager.fetchesIssued(), "no page asked for twice");
        assertEquals(s.faults(), pager.fetchesIssued() + s.coalesced(), "a fault either fetches or joins a fetch");
        assertEquals(total - distinct, pager.missingPages());
        assertEquals(total - distinct, pager.missing().count());
        assertEquals(0, pager.pendingFaults());
        assertEquals(0, pager.eexistRaces());
        assertEquals(distinct, pageSource.faultsServed(), "the source was told about every fault served");
        // (6) stats
        assertTrue(s.faults() >= distinct, s.toString());
        assertTrue(s.p50Micros() > 0 && s.p99Micros() >= s.p50Micros() && s.maxMicros() >= s.p99Micros(), s.toString());
        assertTrue(s.blockedTime().toNanos() >= s.p50Micros() * 1000L * (s.faults() / 2), s.toString());
        assertEquals(0, s.backgroundPages());
        // hashes recorded from the bytes placed
        PageHashes h = pager.hashes();
        for (long[] pages : work) {
            for (long gpa : pages) {
                assertEquals(PageHashes.hashPage(source.buffer(gpa, PAGE), gpa), h.get(gpa));
            }
        }
    }

    @Test
    void presentPagesAreNotFetchedAndStalePagesAre() throws Exception {
        Endpoint ep = endpoint(Transport.NETTY);
        long[] data = PostcopyFixtures.pages(source, false);
        long[] zeros = PostcopyFixtures.pages(source, true);
        DirtyBitmap present = DirtyBitmap.empty(dest);
        // present with the right bytes (as a hybrid's precopy phase left them)
        long[] copied = Arrays.copyOfRange(data, 0, 50);
        for (long gpa : copied) {
            dest.write(gpa, PostcopyFixtures.pageOf(source, gpa));
            present.markDirty(gpa);
        }
        // present because known zero, but never written: a memfd hole that still faults
        long[] knownZero = Arrays.copyOfRange(zeros, 0, 20);
        for (long gpa : knownZero) {
            present.markDirty(gpa);
        }
        // written by an earlier round but dirtied since, so not present: stale bytes that must not survive
        long[] stale = Arrays.copyOfRange(data, 50, 80);
        for (long gpa : stale) {
            dest.write(gpa, new byte[] {1, 2, 3, 4});
        }
        PostcopyPager pager = pager(present, new GrpcPageFetcher(ep.channel(), TOKEN));
        assertEquals(dest.totalPages() - copied.length - knownZero.length, pager.missingPages());

        new Touchers(source, dest, List.of(copied, knownZero, stale)).start().await(20);
        settle(pager);
        assertEquals(stale.length, pager.fetchesIssued(), "only the stale pages were fetched");
        assertEquals(knownZero.length, pager.staleFaults(), "holes among the present pages got zero pages locally");
    }

    /**
     * Postcopy's zero-fill: pages that are holes on the source become present holes after the start. A touch gets a
     * zero page without asking the source, and untouched ones take no memory.
     */
    @Test
    void holesOnTheSourceCountAsPresentAndStayHolesUntilTouched() throws Exception {
        long[] zeros = PostcopyFixtures.pages(source, true);
        long[] data = PostcopyFixtures.pages(source, false);
        PostcopyPager pager = pager(DirtyBitmap.empty(dest),
                new GrpcPageFetcher(endpoint(Transport.IN_PROCESS).channel(), TOKEN));
        DirtyBitmap holes = DirtyBitmap.empty(dest);
        for (long gpa : zeros) {
            holes.markDirty(gpa);
        }
        for (var r : holes.ranges()) {
            pager.zeroOnSource(r.gpa(), r.pages());
        }
        assertEquals(data.length, pager.missingPages(), "only the data pages are still missing");
        long[] touched = Arrays.copyOfRange(zeros, 0, 10);
        long[] fetched = Arrays.copyOfRange(data, 0, 5);
        new Touchers(source, dest, List.of(touched, fetched)).start().await(20);
        settle(pager);
        assertEquals(fetched.length, pager.fetchesIssued(), "holes were not asked for");
        assertEquals(touched.length, pager.staleFaults(), "each touched hole got a zero page here");
        DirtyBitmap populated = DirtyBitmap.populated(dest);
        for (long gpa : Arrays.copyOfRange(zeros, 10, zeros.length)) {
            assertFalse(populated.isDirty(gpa), "an untouched hole takes no memory: 0x" + Long.toHexString(gpa));
            assertEquals(0, pager.hashes().get(gpa));
        }
        for (long gpa : data) { // the rest arrives by push: then every page is present
            push(pager, gpa, 1, true);
        }
        assertTrue(pager.awaitAllPresent(java.time.Duration.ofSeconds(5)));
    }

    @Test
    void presentPagesAreMappedInBulkAfterTheStart() throws Exception {
        long[] data = PostcopyFixtures.pages(source, false);
        DirtyBitmap present = DirtyBitmap.empty(dest);
        long[] copied = Arrays.copyOfRange(data, 0, 200);
        for (long gpa : copied) {
            dest.write(gpa, PostcopyFixtures.pageOf(source, gpa));
            present.markDirty(gpa);
        }
        PostcopyPager pager = pager(present, new GrpcPageFetcher(endpoint(Transport.IN_PROCESS).channel(), TOKEN));
        assertTrue(PostcopyFixtures.eventually(5000, () -> pager.mappedInBulk() == copied.length),
                "mapped in bulk: " + pager.mappedInBulk() + ", error " + pager.lastError());
        new Touchers(source, dest, List.of(copied)).start().await(20);
        assertEquals(0, pager.fetchesIssued());
        assertEquals(0, pager.unmappedTouches() + pager.staleFaults(), "no touch of a mapped page traps");
    }

    /**
     * Hybrid's destination: the trap is armed before precopy, which fills memory through an alias (a touch of the
     * guest's mapping would block); at the switchover, present and stale pages are admitted without punching
     * anything out. Stale pages keep their bytes in the memfd until the source's replace them.
     */
    @Test
    void armedBeforePrecopyThenStalePagesStayInMemoryUntilReplaced() throws Exception {
        Endpoint ep = endpoint(Transport.NETTY);
        PageHashes hashes = new PageHashes(dest);
        PostcopyPager pager = closeLater(new PostcopyPager(dest, dev.ferry.memory.MissingPageTrap.open(dest), hashes,
                new GrpcPageFetcher(ep.channel(), TOKEN)));
        long[] data = PostcopyFixtures.pages(source, false);
        long[] copied = Arrays.copyOfRange(data, 0, 60);
        long[] stale = Arrays.copyOfRange(data, 60, 100);
        long[] zeros = Arrays.copyOfRange(PostcopyFixtures.pages(source, true), 0, 20); // sent as zero ranges
        DirtyBitmap staleSet = DirtyBitmap.empty(dest);
        try (GuestMemory precopy = dest.alias()) {
            for (long gpa : copied) {
                precopy.write(gpa, PostcopyFixtures.pageOf(source, gpa));
                pager.precopied(gpa, 1, true);
            }
            for (long gpa : stale) {
                precopy.write(gpa, new byte[] {1, 2, 3, 4});
                pager.precopied(gpa, 1, true);
                staleSet.markDirty(gpa);
            }
            for (long gpa : zeros) {
                pager.precopied(gpa, 1, false);
            }
        }
        assertEquals(dest.totalPages() - copied.length - stale.length - zeros.length, pager.missingPages());
        pager.admit(staleSet);
        assertEquals(dest.totalPages() - copied.length - zeros.length, pager.missingPages());
        DirtyBitmap inMemory = DirtyBitmap.populated(dest);
        for (long gpa : stale) {
            assertTrue(inMemory.isDirty(gpa), "stale page 0x" + Long.toHexString(gpa) + " was punched out");
        }
        pager.start();
        new Touchers(source, dest, List.of(copied, stale, zeros)).start().await(20);
        settle(pager);
        assertEquals(stale.length, pager.fetchesIssued(), "only the stale pages were fetched");
        for (long gpa : stale) {
            assertEquals(PageHashes.hashPage(source.buffer(gpa, PAGE), gpa), hashes.get(gpa));
        }
    }

    // (2) ------------------------------------------------------------------------------------------------------------

    @ParameterizedTest
    @EnumSource(Transport.class)
    void backgroundPushRacesFaultsAndPlacesEveryPageOnce(Transport transport) throws Exception {
        Endpoint ep = endpoint(transport);
        GrpcPageFetcher fetcher = new GrpcPageFetcher(ep.channel(), TOKEN);
        PostcopyPager pager = pager(DirtyBitmap.empty(dest), fetcher);
        long total = dest.totalPages();

        // Some pages arrive by fault first: pushing them later must be a race, not a second copy.
        long[] early = randomPages(source, 200, 7);
        new Touchers(source, dest, List.of(early)).start().await(20);
        settle(pager);
        long earlyDistinct = LongStream.of(early).distinct().count();

        // Then the whole memory is pushed by two 'streams' (64-page chunks in random order, half from direct
        // buffers, half from heap buffers, zero pages as zero ranges) while four 'vCPUs' fault on random pages.
        List<Long> chunks = new ArrayList<>();
        for (long gpa = 0; gpa < source.totalBytes(); gpa += 64L * PAGE) {
            chunks.add(gpa);
        }
        Collections.shuffle(chunks, new java.util.Random(3));
        AtomicInteger next = new AtomicInteger();
        List<CompletableFuture<Void>> pushers = new ArrayList<>();
        List<long[]> work = new ArrayList<>();
        for (int t = 0; t < 4; t++) {
            work.add(randomPages(source, 250, 200 + t));
        }
        Touchers touchers = new Touchers(source, dest, work).start();
        for (int s = 0; s < 2; s++) {
            boolean direct = s == 0;
            pushers.add(CompletableFuture.runAsync(() -> {
                int i;
                while ((i = next.getAndIncrement()) < chunks.size()) {
                    push(pager, chunks.get(i), 64, direct);
                }
            }));
        }
        CompletableFuture.allOf(pushers.toArray(CompletableFuture[]::new)).get(20, TimeUnit.SECONDS);
        touchers.await(20);
        assertTrue(pager.awaitAllPresent(Duration.ofSeconds(10)), pager.missingPages() + " pages still missing");

        PostcopyPager.Stats s = pager.stats();
        assertEquals(0, pager.missingPages());
        assertEquals(0, pager.missing().count());
        assertEquals(total, pager.faultPagesPlaced() + s.backgroundPages(), "every page placed exactly once: " + s);
        assertTrue(s.races() >= earlyDistinct, "pushed pages that faults had placed are races: " + s);
        assertEquals(0, pager.eexistRaces(), "the kernel never had to refuse a second copy");
        // what landed is the source, and the incrementally kept hashes say so
        TestMemory.assertSameContent(source, dest);
        long sourceDigest = PageHashes.digestOf(source);
        assertEquals(sourceDigest, pager.hashes().digest(), "digest from the bytes placed");
        assertEquals(sourceDigest, PageHashes.digestOf(dest), "digest recomputed from destination memory");

        // a late push after everything is present changes nothing and is all races (once the replies of fetches
        // that background pages overtook have come in: they are races too)
        assertTrue(PostcopyFixtures.eventually(5000, () -> fetcher.pendingFetches() == 0));
        long racesBefore = pager.stats().races();
        long placedByFaults = pager.faultPagesPlaced();
        push(pager, 0, 64, false);
        assertTrue(pager.stats().races() >= racesBefore + 64, pager.stats().toString());
        assertEquals(s.backgroundPages(), pager.stats().backgroundPages());
        assertEquals(placedByFaults, pager.faultPagesPlaced());
        assertEquals(0, pager.eexistRaces());
    }

    @Test
    void largeRangesArePlacedInChunks() throws Exception {
        PostcopyPager pager = pager(DirtyBitmap.empty(dest),
                new GrpcPageFetcher(endpoint(Transport.IN_PROCESS).channel(), TOKEN));
        // 600 data pages from one buffer (more than one chunk), starting past the buffer's position 0
        int n = 600;
        ByteBuffer b = ByteBuffer.allocateDirect(n * PAGE + PAGE);
        b.position(PAGE);
        b.put(source.buffer(0, n * PAGE));
        b.position(PAGE);
        pager.writePages(0, n, b);
        // the rest of region 0 as one zero range (thousands of pages)
        long end0 = dest.regions().get(0).endGpa();
        long zeroPages = (end0 - (long) n * PAGE) / PAGE;
        pager.zeroPages((long) n * PAGE, zeroPages);
        assertEquals(dest.totalPages() - n - zeroPages, pager.missingPages());
        assertEquals(n + zeroPages, pager.stats().backgroundPages());
        assertEquals(source.buffer(0, n * PAGE), dest.buffer(0, n * PAGE));
        assertEquals(-1, dest.buffer((long) n * PAGE, (int) (zeroPages * PAGE))
                .mismatch(ByteBuffer.allocate((int) (zeroPages * PAGE))));
        for (long gpa = 0; gpa < end0; gpa += PAGE) {
            long expect = gpa < (long) n * PAGE ? PageHashes.hashPage(source.buffer(gpa, PAGE), gpa) : 0;
            assertEquals(expect, pager.hashes().get(gpa));
        }
        assertEquals(0, pager.fetchesIssued());
    }

    /** One data-plane batch as PageStreamHandler applies it: runs of data pages, zero pages as zero ranges. */
    private void push(PostcopyPager pager, long gpa, int pages, boolean direct) {
        int i = 0;
        while (i < pages) {
            long g = gpa + (long) i * PAGE;
            boolean zero = PostcopyFixtures.isZeroPage(source, g);
            int j = i + 1;
            while (j < pages && PostcopyFixtures.isZeroPage(source, gpa + (long) j * PAGE) == zero) {
                j++;
            }
            if (zero) {
                pager.zeroPages(g, j - i);
            } else {
                int len = (j - i) * PAGE;
                ByteBuffer b = direct ? ByteBuffer.allocateDirect(len + 100) : ByteBuffer.allocate(len + 100);
                b.position(100);
                b.put(source.buffer(g, len));
                b.position(100);
                pager.writePages(g, j - i, b);
                assertEquals(100, b.position(), "position left alone");
            }
            i = j;
        }
    }

    // (3) ------------------------------------------------------------------------------------------------------------

    @Test
    void eightThreadsOnOnePageMakeOneFetch() throws Exception {
        Endpoint ep = endpoint(Transport.NETTY);
        GatedFetcher gated = new GatedFetcher(new GrpcPageFetcher(ep.channel(), TOKEN));
        PostcopyPager pager = pager(DirtyBitmap.empty(dest), gated);
        long gpa = PostcopyFixtures.pages(source, false)[123];
        List<long[]> work = new ArrayList<>();
        for (int t = 0; t < 8; t++) {
            work.add(new long[] {gpa});
        }
        Touchers touchers = new Touchers(source, dest, work).start();
        assertTrue(PostcopyFixtures.eventually(5000, () -> pager.stats().faults() == 8), pager.stats().toString());
        assertEquals(7, pager.stats().coalesced(), "seven faults joined the first one's fetch");
        assertEquals(1, gated.fetches.get(), "asked the source once");
        assertEquals(8, touchers.done.getCount(), "all eight still blocked while the fetch is held");
        gated.open();
        touchers.await(10);
        settle(pager);
        assertEquals(1, pager.faultPagesPlaced());
        assertEquals(1, pageSource.faultsServed());
    }

    @Test
    void faultStormOfEightThreads() throws Exception {
        Endpoint ep = endpoint(Transport.NETTY);
        PostcopyPager pager = pager(DirtyBitmap.empty(dest), new GrpcPageFetcher(ep.channel(), TOKEN));
        // every thread walks the same 600 pages, each from its own starting point, all at once
        long[] shared = randomPages(source, 600, 99);
        List<long[]> work = new ArrayList<>();
        for (int t = 0; t < 8; t++) {
            long[] mine = new long[shared.length];
            for (int i = 0; i < shared.length; i++) {
                mine[i] = shared[(i + t * 7) % shared.length];
            }
            work.add(mine);
        }
        long t0 = System.nanoTime();
        new Touchers(source, dest, work).start().await(20);
        settle(pager);
        long elapsedMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
        long distinct = LongStream.of(shared).distinct().count();
        PostcopyPager.Stats s = pager.stats();
        assertEquals(distinct, pager.fetchesIssued(), "no page asked for twice: " + s);
        assertEquals(distinct, pager.faultPagesPlaced());
        assertEquals(s.faults(), distinct + s.coalesced(), s.toString());
        assertTrue(s.coalesced() > 0, "threads on the same pages at once coalesce: " + s);
        System.out.printf("fault storm: 8 threads x %d pages (%d distinct) in %d ms: %s%n", shared.length, distinct,
                elapsedMs, s);
    }

    // (4) ------------------------------------------------------------------------------------------------------------

    @Test
    void connectionCutWhileFaultsAreInFlightThenRecovery() throws Exception {
        // The first source answers only while 'serving' is open: faults get stuck in flight, then the server dies.
        CountDownLatch serving = new CountDownLatch(1);
        HoldingSource holding = new HoldingSource(source, serving);
        Endpoint first = closeLater(Transport.NETTY.start(PagerServer.service(new Sessions().with(TOKEN, holding))));
        GrpcPageFetcher f1 = new GrpcPageFetcher(first.channel(), TOKEN);
        PostcopyPager pager = pager(DirtyBitmap.empty(dest), f1);
        java.util.concurrent.LinkedBlockingQueue<Status> broken = new java.util.concurrent.LinkedBlockingQueue<>();
        pager.onFetcherFailed(broken::add);

        long[] data = PostcopyFixtures.pages(source, false);
        List<long[]> work = new ArrayList<>();
        for (int t = 0; t < 4; t++) {
            work.add(new long[] {data[10 * t], data[10 * t + 1], data[10 * t + 2]});
        }
        Touchers touchers = new Touchers(source, dest, work).start();
        assertTrue(PostcopyFixtures.eventually(5000, () -> pager.pendingFaults() == 4), "4 faults pending");

        first.shutdownServer(); // the cut
        serving.countDown();    // let the stuck server threads go (their replies go nowhere)
        assertTrue(PostcopyFixtures.eventually(5000, () -> pager.stalledFaults() == 4),
                "fetches parked: " + pager.stalledFaults());
        assertNotNull(f1.failure());
        Status reported = broken.poll(5, TimeUnit.SECONDS);
        assertNotNull(reported, "the failure was reported, for the control plane to start recovery");
        Thread.sleep(300);
        assertTrue(broken.isEmpty(), "reported once per fetcher: " + broken);
        assertEquals(4, touchers.done.getCount(), "the 'vCPUs' stay blocked across the cut");
        assertEquals(4, pager.pendingFaults());
        assertTrue(pager.fetchFailures() >= 4);
        assertTrue(pager.missing().isDirty(data[0]));
        Status.Code code = pager.lastFetchFailure().getCode();
        assertTrue(code == Status.Code.UNAVAILABLE || code == Status.Code.CANCELLED, code.toString());

        // Recovery: a new connection (here a new server) to the source; parked faults are asked again.
        Endpoint second = endpoint(Transport.NETTY);
        pager.replaceFetcher(new GrpcPageFetcher(second.channel(), TOKEN));
        touchers.await(10);
        settle(pager);
        assertEquals(12, pager.faultPagesPlaced());
        assertEquals(0, pager.pendingFaults());
        assertEquals(0, pager.stalledFaults());
    }

    @Test
    void cancelledStreamParksNewFaultsUntilANewFetcherArrives() throws Exception {
        Endpoint ep = endpoint(Transport.IN_PROCESS);
        GrpcPageFetcher f1 = new GrpcPageFetcher(ep.channel(), TOKEN);
        PostcopyPager pager = pager(DirtyBitmap.empty(dest), f1);
        long[] data = PostcopyFixtures.pages(source, false);
        new Touchers(source, dest, List.of(new long[] {data[0], data[1]})).start().await(10);

        f1.close(); // the stream is cancelled; faults from now on fail at once and are parked
        List<long[]> work = new ArrayList<>();
        for (int t = 0; t < 3; t++) {
            work.add(new long[] {data[100 + t], data[200 + t]});
        }
        Touchers touchers = new Touchers(source, dest, work).start();
        assertTrue(PostcopyFixtures.eventually(5000, () -> pager.stalledFaults() == 3), "3 faults parked");
        Thread.sleep(200);
        assertEquals(3, touchers.done.getCount(), "the 'vCPUs' stay blocked");
        assertEquals(Status.Code.CANCELLED, pager.lastFetchFailure().getCode());
        assertTrue(pager.lastError() == null, String.valueOf(pager.lastError()));

        pager.replaceFetcher(new GrpcPageFetcher(ep.channel(), TOKEN));
        touchers.await(10);
        settle(pager);
        assertEquals(8, pager.faultPagesPlaced());
    }

    // lifetime ---------------------------------------------------------------------------------------------------------

    @Test
    void closeReleasesBlockedThreadsAndRefusesLaterPages() throws Exception {
        GatedFetcher never = new GatedFetcher(new GrpcPageFetcher(endpoint(Transport.IN_PROCESS).channel(), TOKEN));
        PostcopyPager pager = new PostcopyPager(dest, new PageHashes(dest), DirtyBitmap.empty(dest), never);
        pager.start();
        long gpa = PostcopyFixtures.pages(source, false)[5];
        CompletableFuture<byte[]> touched = CompletableFuture.supplyAsync(() -> PostcopyFixtures.touch(dest, gpa));
        assertTrue(PostcopyFixtures.eventually(5000, () -> pager.pendingFaults() == 1));
        assertFalse(touched.isDone());
        pager.close();
        assertArrayEquals(new byte[PAGE], touched.get(5, TimeUnit.SECONDS), "released; the page reads as zero");
        assertThrows(IllegalStateException.class, () -> pager.writePages(0, 1, ByteBuffer.allocate(PAGE)));
        assertThrows(IllegalStateException.class, () -> pager.zeroPages(0, 1));
        assertFalse(pager.awaitAllPresent(Duration.ofMillis(10)));
        pager.close(); // idempotent
        never.open();
    }

    @Test
    void rejectsRangesOutsideARegion() throws Exception {
        PostcopyPager pager = pager(DirtyBitmap.empty(dest),
                new GrpcPageFetcher(endpoint(Transport.IN_PROCESS).channel(), TOKEN));
        long end = dest.regions().get(0).endGpa();
        assertThrows(IllegalArgumentException.class, () -> pager.writePages(end - PAGE, 2, ByteBuffer.allocate(2 * PAGE)));
        assertThrows(IllegalArgumentException.class, () -> pager.writePages(1, 1, ByteBuffer.allocate(PAGE)));
        assertThrows(IllegalArgumentException.class, () -> pager.writePages(0, 2, ByteBuffer.allocate(PAGE)));
        assertThrows(IllegalArgumentException.class, () -> pager.zeroPages(dest.totalBytes(), 1));
        assertEquals(dest.totalPages(), pager.missingPages());
    }

    // helpers --------------------------------------------------------------------------------------------------------

    /** Holds every completion until {@link #open()}; counts fetches. */
    static final class GatedFetcher implements PageFetcher {
        final PageFetcher delegate;
        final CompletableFuture<Void> gate = new CompletableFuture<>();
        final AtomicInteger fetches = new AtomicInteger();

        GatedFetcher(PageFetcher delegate) {
            this.delegate = delegate;
        }

        void open() {
            gate.complete(null);
        }

        @Override
        public CompletableFuture<FetchedPage> fetch(long gpa, int pages) {
            fetches.incrementAndGet();
            CompletableFuture<FetchedPage> f = delegate.fetch(gpa, pages);
            return gate.thenCompose(v -> f);
        }

        @Override
        public void close() {
            delegate.close();
        }
    }

    /** A source that holds every read of memory until {@code serving} opens (a stuck source). */
    static final class HoldingSource implements PageSource {
        final GuestMemory memory;
        final CountDownLatch serving;

        HoldingSource(GuestMemory memory, CountDownLatch serving) {
            this.memory = memory;
            this.serving = serving;
        }

        @Override
        public GuestMemory memory() {
            return memory;
        }

        @Override
        public void faulted(long gpa, long pages) {
        }

        @Override
        public boolean enterMemory() {
            try {
                return serving.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            }
        }
    }
}
