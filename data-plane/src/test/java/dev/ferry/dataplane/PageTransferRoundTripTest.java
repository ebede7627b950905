package dev.ferry.dataplane;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.PageHashes;
import io.grpc.Status;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** Source to destination through real gRPC transports: memory and digests converge over rounds. */
class PageTransferRoundTripTest {
    static final long MEMORY = 16 << 20;
    static final int PAGE = 4096;
    static final String TOKEN = "session-token-1";

    private final GuestMemory src = GuestMemory.allocate(MEMORY, 2);
    private final GuestMemory dst = GuestMemory.allocate(MEMORY, 2);
    private final PageHashes srcHashes = new PageHashes(src);
    private final PageHashes dstHashes = new PageHashes(dst);
    private final MemoryPageWriter writer = new MemoryPageWriter(dst, dstHashes);
    private final Map<String, IncomingPages> sessions = new ConcurrentHashMap<>(Map.of(TOKEN, writer));
    private final IncomingBatch.ReceiveStats received = new IncomingBatch.ReceiveStats();
    private Transport.Endpoint endpoint;

    private Transport.Endpoint start(Transport transport) throws Exception {
        endpoint = transport.start(PageTransferServer.service(t -> Optional.ofNullable(sessions.get(t)), received));
        return endpoint;
    }

    @AfterEach
    void tearDown() throws InterruptedException {
        if (endpoint != null) {
            endpoint.close();
        }
        writer.close();
        src.close();
        dst.close();
    }

    private void assertConverged() {
        TestMemory.assertSameContent(src, dst);
        long digest = src.digest();
        assertEquals(digest, srcHashes.digest(), "source hashes track what was sent");
        assertEquals(digest, dstHashes.digest(), "destination hashes track what landed");
        assertEquals(digest, dst.digest());
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void roundsConvergeWithZeroPagesAndDirtySubsets(Transport transport) throws Exception {
        start(transport);
        long zeros = TestMemory.fillRandom(src, 1, 10);
        long total = src.totalPages();
        try (PageSender sender = new PageSender(endpoint.channel(), TOKEN, src, srcHashes, 3,
                BandwidthLimiter.unlimited())) {
            RoundStats r1 = sender.sendRound(1, DirtyBitmap.full(src), () -> false);
            assertEquals(1, r1.round());
            assertEquals(total - zeros, r1.pagesSent());
            assertEquals(zeros, r1.zeroPages());
            assertTrue(r1.wireBytes() > r1.dataBytes() && r1.wireBytes() < r1.dataBytes() * 1.02, "" + r1);
            assertConverged();

            // Round 2: some pages rewritten, a data page turned zero, a zero page turned data, and the pages on
            // both sides of the slot boundary.
            SplittableRandom rnd = new SplittableRandom(2);
            DirtyBitmap dirty = DirtyBitmap.empty(src);
            for (int i = 0; i < 300; i++) {
                long gpa = rnd.nextLong(total) * PAGE;
                TestMemory.randomPage(src, gpa, rnd);
                dirty.markDirty(gpa);
            }
            long madeZero = firstPage(true, false);
            long madeData = firstPage(false, true);
            TestMemory.zeroPage(src, madeZero);
            dirty.markDirty(madeZero);
            TestMemory.randomPage(src, madeData, rnd);
            dirty.markDirty(madeData);
            long boundary = src.regions().get(1).guestPhysAddr();
            TestMemory.randomPage(src, boundary - PAGE, rnd);
            TestMemory.randomPage(src, boundary, rnd);
            dirty.markDirty(boundary - PAGE);
            dirty.markDirty(boundary);

            RoundStats r2 = sender.sendRound(2, dirty, () -> false);
            assertEquals(dirty.count(), r2.pagesSent() + r2.zeroPages());
            assertTrue(r2.zeroPages() >= 1);
            assertConverged();
            assertEquals(r1.pagesSent() + r2.pagesSent(), writer.pagesWritten());
            assertEquals(r1.zeroPages() + r2.zeroPages(), writer.zeroPagesWritten());
            assertEquals((r1.pagesSent() + r2.pagesSent()) * PAGE, writer.bytesReceived());

            // Round 3 with nothing dirty still completes (every stream sends an empty end_of_round batch).
            RoundStats r3 = sender.sendRound(3, DirtyBitmap.empty(src), () -> false);
            assertEquals(0, r3.pagesSent() + r3.zeroPages());
            assertThrows(IllegalArgumentException.class, () -> sender.sendRound(3, dirty, () -> false));
        }
        if (transport == Transport.NETTY) {
            assertTrue(received.directBatches.sum() > 0);
            assertEquals(0, received.heapBatches.sum(), "Netty delivers ByteBuffers: no heap copies");
        } else {
            assertTrue(received.heapBatches.sum() > 0);
        }
    }

    /** First page whose source content is (non-)zero, scanning from the start; {@code data} selects which. */
    private long firstPage(boolean data, boolean zero) {
        for (long gpa = 0; gpa < MEMORY; gpa += PAGE) {
            boolean isZero = PageHashes.isZero(TestMemory.page(src, gpa));
            if ((data && !isZero) || (zero && isZero)) {
                return gpa;
            }
        }
        throw new AssertionError("no such page");
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void moreStreamsThanPagesAndOneStream(Transport transport) throws Exception {
        start(transport);
        TestMemory.fillRandom(src, 3, 0);
        DirtyBitmap few = DirtyBitmap.empty(src);
        few.markDirty(0);
        few.markDirty(10 * PAGE);
        try (PageSender sender = new PageSender(endpoint.channel(), TOKEN, src, srcHashes, 8,
                BandwidthLimiter.unlimited())) {
            assertEquals(2, sender.sendRound(1, few, () -> false).pagesSent());
        }
        assertEquals(2, writer.pagesWritten());
        try (PageSender sender = new PageSender(endpoint.channel(), TOKEN, src, srcHashes, 1,
                BandwidthLimiter.unlimited())) {
            sender.sendRound(1, DirtyBitmap.full(src), () -> false);
        }
        assertConverged();
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void everyWireByteGoesThroughTheLimiter(Transport transport) throws Exception {
        start(transport);
        TestMemory.fillRandom(src, 4, 20);
        FakeClock clock = new FakeClock();
        long rate = 8 << 20;
        BandwidthLimiter limiter = new BandwidthLimiter(rate, clock);
        RoundStats r;
        try (PageSender sender = new PageSender(endpoint.channel(), TOKEN, src, srcHashes, 1, limiter)) {
            r = sender.sendRound(1, DirtyBitmap.full(src), () -> false);
        }
        assertConverged();
        assertEquals(r.wireBytes(), limiter.grantedBytes());
        // One stream, so the fake time is the sum of its sleeps: exactly the bytes beyond the burst at the rate.
        double expected = (r.wireBytes() - BandwidthLimiter.burst(rate)) / (double) rate;
        assertEquals(expected, clock.sleptNanos() / 1e9, 1e-3);
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void workWhileARoundIsSentRunsOnTheCallerAndAFailureAbandonsTheRound(Transport transport) throws Exception {
        start(transport);
        TestMemory.fillRandom(src, 3, 10);
        try (PageSender sender = new PageSender(endpoint.channel(), TOKEN, src, srcHashes, 2,
                BandwidthLimiter.unlimited())) {
            Thread caller = Thread.currentThread();
            Thread[] ranOn = new Thread[1];
            RoundStats r = sender.sendRound(1, DirtyBitmap.full(src), () -> false, () -> ranOn[0] = Thread.currentThread());
            assertEquals(caller, ranOn[0]);
            assertEquals(src.totalPages(), r.pagesSent() + r.zeroPages());
            assertConverged();

            IllegalStateException e = assertThrows(IllegalStateException.class, () -> sender.sendRound(2,
                    DirtyBitmap.full(src), () -> false, () -> {
                        throw new IllegalStateException("device state could not be saved");
                    }));
            assertEquals("device state could not be saved", e.getMessage());
            PageTransferException after = assertThrows(PageTransferException.class,
                    () -> sender.sendRound(3, DirtyBitmap.full(src), () -> false));
            assertEquals(Status.Code.FAILED_PRECONDITION, after.status().getCode(), "the abandoned round failed it");
        }
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void closedSenderRefusesRounds(Transport transport) throws Exception {
        start(transport);
        PageSender sender = new PageSender(endpoint.channel(), TOKEN, src, srcHashes, 2, BandwidthLimiter.unlimited());
        sender.sendRound(1, DirtyBitmap.full(src), () -> false);
        sender.close();
        sender.close();
        PageTransferException e = assertThrows(PageTransferException.class,
                () -> sender.sendRound(2, DirtyBitmap.full(src), () -> false));
        assertEquals(Status.Code.FAILED_PRECONDITION, e.status().getCode());
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void streamsAreSpreadOverEveryDataPlaneAddress(Transport transport) throws Exception {
        IncomingBatch.ReceiveStats second = new IncomingBatch.ReceiveStats();
        start(transport);
        Transport.Endpoint other = transport.start(PageTransferServer.service(t -> Optional.ofNullable(sessions.get(t)),
                second));
        try {
            TestMemory.fillRandom(src, 1, 10);
            try (PageSender sender = new PageSender(java.util.List.of(endpoint.channel(), other.channel()), TOKEN, src,
                    srcHashes, 4, BandwidthLimiter.unlimited(), PageSender.Options.DEFAULT)) {
                sender.sendRound(1, DirtyBitmap.full(src), () -> false);
            }
            assertConverged();
            assertTrue(received.directBatches.sum() + received.heapBatches.sum() > 0, "the first address got pages");
            assertTrue(second.directBatches.sum() + second.heapBatches.sum() > 0, "the second address got pages");
        } finally {
            other.close();
        }
    }

    /** A session that did not accept ZERO_PAGE_ELISION. */
    private IncomingPages withoutZeroRanges() {
        return new IncomingPages() {
            @Override
            public GuestMemory memory() {
                return writer.memory();
            }

            @Override
            public PageHashes hashes() {
                return writer.hashes();
            }

            @Override
            public void writePages(long gpa, int pages, java.nio.ByteBuffer data) {
                writer.writePages(gpa, pages, data);
            }

            @Override
            public void zeroPages(long gpa, long pages) {
                writer.zeroPages(gpa, pages);
            }

            @Override
            public boolean acceptsZeroRanges() {
                return false;
            }
        };
    }

    /** Random pages, a tenth zero, then three pages in four made compressible (one random word in four, zeros between). */
    private void fillMostlyCompressible() {
        SplittableRandom rnd = new SplittableRandom(4);
        TestMemory.fillRandom(src, 5, 10);
        for (long gpa = 0; gpa < MEMORY; gpa += PAGE) {
            if (gpa / PAGE % 4 == 0) {
                continue;
            }
            for (int w = 0; w < PAGE / 8; w++) {
                src.putLong(gpa + w * 8L, w % 4 == 0 ? rnd.nextLong() : 0);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void lz4BatchesLandAsTheirPagesAndIncompressibleOnesGoRaw(Transport transport) throws Exception {
        sessions.put(TOKEN, PageTransferErrorsTest.Delegating.acceptingLz4(writer));
        start(transport);
        fillMostlyCompressible();
        try (PageSender sender = new PageSender(java.util.List.of(endpoint.channel()), TOKEN, src, srcHashes, 3,
                BandwidthLimiter.unlimited(), PageSender.Options.DEFAULT.withCompression(PageCompression.ALWAYS))) {
            RoundStats r1 = sender.sendRound(1, DirtyBitmap.full(src), () -> false);
            assertConverged();
            assertTrue(r1.compressedPages() > 0 && r1.compressedPages() <= r1.pagesSent(), "" + r1);
            assertTrue(r1.compressedBytes() < r1.compressedPages() * PAGE * 0.7, "compressed: " + r1);
            assertTrue(r1.wireBytes() < r1.dataBytes() * 0.8, "fewer bytes on the wire: " + r1);
            assertEquals(r1.pagesSent() * PAGE, writer.bytesReceived(), "page bytes counted after decompression");

            // A round of random pages only: blocks that would not shrink go raw.
            SplittableRandom rnd = new SplittableRandom(6);
            DirtyBitmap dirty = DirtyBitmap.empty(src);
            for (long gpa = 0; gpa < MEMORY / 4; gpa += PAGE) {
                TestMemory.randomPage(src, gpa, rnd);
                dirty.markDirty(gpa);
            }
            RoundStats r2 = sender.sendRound(2, dirty, () -> false);
            assertEquals(0, r2.compressedPages(), "" + r2);
            assertConverged();
        }
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void lz4BatchesWithoutTheFeatureAreRefused(Transport transport) throws Exception {
        start(transport); // the plain writer: LZ4_PAGE_COMPRESSION not accepted
        fillMostlyCompressible();
        try (PageSender sender = new PageSender(java.util.List.of(endpoint.channel()), TOKEN, src, srcHashes, 1,
                BandwidthLimiter.unlimited(), PageSender.Options.DEFAULT.withCompression(PageCompression.ALWAYS))) {
            PageTransferException e = assertThrows(PageTransferException.class,
                    () -> sender.sendRound(1, DirtyBitmap.full(src), () -> false));
            assertEquals(Status.Code.INVALID_ARGUMENT, e.status().getCode());
            assertTrue(e.status().getDescription().contains("LZ4_PAGE_COMPRESSION"), e.status().getDescription());
        }
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void withoutZeroPageElisionZeroPagesGoAsDataAndZeroRangesAreRefused(Transport transport) throws Exception {
        sessions.put(TOKEN, withoutZeroRanges());
        start(transport);
        long zeros = TestMemory.fillRandom(src, 1, 10);
        assertTrue(zeros > 0);
        try (PageSender sender = new PageSender(java.util.List.of(endpoint.channel()), TOKEN, src, srcHashes, 2,
                BandwidthLimiter.unlimited(), PageSender.Options.DEFAULT.withZeroPageElision(false))) {
            RoundStats r1 = sender.sendRound(1, DirtyBitmap.full(src), () -> false);
            assertEquals(0, r1.zeroPages(), "no zero ranges without the feature");
            assertEquals(src.totalPages(), r1.pagesSent());
            assertConverged();
        }
        try (PageSender sender = new PageSender(java.util.List.of(endpoint.channel()), TOKEN, src, srcHashes, 1,
                BandwidthLimiter.unlimited(), PageSender.Options.DEFAULT)) {
            PageTransferException e = assertThrows(PageTransferException.class,
                    () -> sender.sendRound(2, DirtyBitmap.full(src), () -> false));
            assertEquals(Status.Code.INVALID_ARGUMENT, e.status().getCode());
            assertTrue(e.status().getDescription().contains("ZERO_PAGE_ELISION"), e.status().getDescription());
        }
    }
}
