package dev.ferry.dataplane;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.PageHashes;
import dev.ferry.v1.FerryMetadata;
import dev.ferry.v1.PageAck;
import dev.ferry.v1.PageBatch;
import dev.ferry.v1.PageRange;
import dev.ferry.v1.PageTransferServiceGrpc;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

/** Authentication, bad input, and failures in the middle of a round, on both transports. */
class PageTransferErrorsTest {
    static final long MEMORY = 8 << 20;
    static final int PAGE = 4096;
    static final String TOKEN = "session-token-2";

    private final GuestMemory src = GuestMemory.allocate(MEMORY, 2);
    private final GuestMemory dst = GuestMemory.allocate(MEMORY, 2);
    private final PageHashes srcHashes = new PageHashes(src);
    private final PageHashes dstHashes = new PageHashes(dst);
    private final MemoryPageWriter writer = new MemoryPageWriter(dst, dstHashes);
    private final Map<String, IncomingPages> sessions = new ConcurrentHashMap<>(Map.of(TOKEN, writer));
    private final ExecutorService executor = Executors.newCachedThreadPool();
    private Transport.Endpoint endpoint;

    private void start(Transport transport) throws Exception {
        endpoint = transport.start(PageTransferServer.service(t -> Optional.ofNullable(sessions.get(t))));
    }

    @AfterEach
    void tearDown() throws InterruptedException {
        executor.shutdownNow();
        if (endpoint != null) {
            endpoint.close();
        }
        writer.close();
        src.close();
        dst.close();
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void unknownTokenIsUnauthenticatedAndWritesNothing(Transport transport) throws Exception {
        start(transport);
        TestMemory.fillRandom(src, 1, 10);
        try (PageSender sender = new PageSender(endpoint.channel(), "not-a-session", src, srcHashes, 2,
                BandwidthLimiter.unlimited())) {
            PageTransferException e = assertThrows(PageTransferException.class,
                    () -> sender.sendRound(1, DirtyBitmap.full(src), () -> false));
            assertEquals(Status.Code.UNAUTHENTICATED, e.status().getCode());
            assertTrue(e.status().getDescription().contains("unknown ferry-session-token"), e.getMessage());
        }
        assertTrue(TestMemory.allZero(dst));
        assertEquals(0, writer.pagesWritten() + writer.zeroPagesWritten());
        assertEquals(0, dstHashes.digest());
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void missingTokenIsUnauthenticated(Transport transport) throws Exception {
        start(transport);
        Reply reply = new Reply();
        StreamObserver<PageBatch> requests = PageTransferServiceGrpc.newStub(endpoint.channel()).streamPages(reply);
        requests.onNext(validBatch(true));
        requests.onCompleted();
        Status s = reply.awaitError();
        assertEquals(Status.Code.UNAUTHENTICATED, s.getCode());
        assertTrue(s.getDescription().contains("missing ferry-session-token"), s.getDescription());
        assertTrue(TestMemory.allZero(dst));
    }

    /** A generated-stub stream with the session token, as any client of the proto would make it. */
    private StreamObserver<PageBatch> generatedStream(Reply reply) {
        Metadata md = new Metadata();
        md.put(FerryMetadata.SESSION_TOKEN, TOKEN);
        return PageTransferServiceGrpc.newStub(endpoint.channel())
                .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(md))
                .streamPages(reply);
    }

    private static PageRange range(long gpa, long pages) {
        return PageRange.newBuilder().setGuestPhysicalAddress(gpa).setPageCount((int) pages).build();
    }

    private static ByteString filled(int pages, int value) {
        byte[] b = new byte[pages * PAGE];
        java.util.Arrays.fill(b, (byte) value);
        return ByteString.copyFrom(b);
    }

    /** Two pages of 0x11 at page 8 and a zero range at page 20. */
    private static PageBatch validBatch(boolean end) {
        return PageBatch.newBuilder().setRound(1).addPageRuns(range(8 * PAGE, 2)).addZeroRanges(range(20 * PAGE, 1))
                .setEndOfRound(end).setData(filled(2, 0x11)).build();
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void generatedClientBatchesLandAndAreAcknowledged(Transport transport) throws Exception {
        start(transport);
        Reply reply = new Reply();
        StreamObserver<PageBatch> requests = generatedStream(reply);
        requests.onNext(validBatch(false));
        requests.onNext(PageBatch.newBuilder().setRound(1).addPageRuns(range(0, 1)).setData(filled(1, 0x22))
                .setEndOfRound(true).build());
        requests.onCompleted();
        reply.awaitCompleted();
        assertEquals(1, reply.acks.size());
        PageAck ack = reply.acks.get(0);
        assertEquals(1, ack.getCompletedRound());
        assertEquals(3L * PAGE, ack.getBytesReceived());
        assertEquals(4, ack.getPagesReceived());
        assertEquals(0x1111111111111111L, dst.getLong(8 * PAGE));
        assertEquals(0x2222222222222222L, dst.getLong(0));
        assertEquals(dst.digest(), dstHashes.digest());
    }

    static Stream<Arguments> badBatches() {
        PageBatch.Builder ok = PageBatch.newBuilder().setRound(1).addPageRuns(range(8 * PAGE, 2));
        List<Arguments> cases = new ArrayList<>();
        for (Transport t : Transport.values()) {
            cases.add(Arguments.of(t, "run past the end", ok.clone().addPageRuns(range(MEMORY, 1))
                    .setData(filled(3, 1)).build(), "outside guest memory"));
            cases.add(Arguments.of(t, "run straddling the end", ok.clone().addPageRuns(range(MEMORY - PAGE, 2))
                    .setData(filled(4, 1)).build(), "outside guest memory"));
            cases.add(Arguments.of(t, "misaligned run", ok.clone().addPageRuns(range(12 * PAGE + 1, 1))
                    .setData(filled(3, 1)).build(), "not 4096-aligned"));
            cases.add(Arguments.of(t, "short data", ok.clone().setData(filled(2, 1).substring(1)).build(),
                    "data has 8191 bytes"));
            cases.add(Arguments.of(t, "missing data", ok.clone().build(), "data has 0 bytes"));
            cases.add(Arguments.of(t, "zero range outside", ok.clone().setData(filled(2, 1))
                    .addZeroRanges(range(1L << 40, 1)).build(), "zero_ranges[0]"));
            cases.add(Arguments.of(t, "empty run", ok.clone().addPageRuns(range(0, 0)).setData(filled(2, 1)).build(),
                    "page_count 0"));
            cases.add(Arguments.of(t, "round 0", ok.clone().setRound(0).setData(filled(2, 1)).build(),
                    "round must be at least 1"));
            cases.add(Arguments.of(t, "round 2^32 - 1", ok.clone().setRound(-1).setData(filled(2, 1)).build(),
                    "round 4294967295 is too large"));
            cases.add(Arguments.of(t, "unknown data_codec", ok.clone().setDataCodecValue(7).setData(filled(2, 1))
                    .build(), "data_codec 7 is unknown"));
            cases.add(Arguments.of(t, "LZ4 without the feature", ok.clone().setDataCodec(PageBatch.DataCodec.LZ4)
                    .setData(lz4(filled(2, 1))).build(), "without the LZ4_PAGE_COMPRESSION feature"));
            cases.add(Arguments.of(t, "stream_index 2^32 - 1", ok.clone().setStreamIndex(-1).setData(filled(2, 1))
                    .build(), "stream_index 4294967295 is out of range"));
        }
        return cases.stream();
    }

    @ParameterizedTest(name = "{0}: {1}")
    @MethodSource("badBatches")
    void badBatchIsInvalidArgumentAndWritesNothing(Transport transport, String what, PageBatch bad, String why)
            throws Exception {
        start(transport);
        Reply reply = new Reply();
        StreamObserver<PageBatch> requests = generatedStream(reply);
        requests.onNext(bad);
        Status s = reply.awaitError();
        assertEquals(Status.Code.INVALID_ARGUMENT, s.getCode(), what);
        assertTrue(s.getDescription().contains(why), s.getDescription());
        assertTrue(TestMemory.allZero(dst), "nothing of the batch written, not even its valid run");
        assertEquals(0, writer.pagesWritten());
    }

    private static ByteString lz4(ByteString raw) {
        byte[] in = raw.toByteArray();
        byte[] out = new byte[Lz4.COMPRESSOR.maxCompressedLength(in.length)];
        int n = Lz4.COMPRESSOR.compress(in, 0, in.length, out, 0, out.length);
        return ByteString.copyFrom(out, 0, n);
    }

    static Stream<Arguments> lostLz4Blocks() {
        PageBatch.Builder ok = PageBatch.newBuilder().setRound(1).addPageRuns(range(8 * PAGE, 2))
                .setDataCodec(PageBatch.DataCodec.LZ4);
        ByteString block = lz4(filled(2, 0x33));
        List<Arguments> cases = new ArrayList<>();
        for (Transport t : Transport.values()) {
            cases.add(Arguments.of(t, "garbage", ok.clone().setData(filled(1, 0xff).substring(0, 100)).build()));
            cases.add(Arguments.of(t, "one page short", ok.clone().setData(lz4(filled(1, 0x33))).build()));
            cases.add(Arguments.of(t, "cut off", ok.clone().setData(block.substring(0, block.size() - 3)).build()));
            cases.add(Arguments.of(t, "one page long", ok.clone().setData(lz4(filled(3, 0x33))).build()));
        }
        return cases.stream();
    }

    @ParameterizedTest(name = "{0}: {1}")
    @MethodSource("lostLz4Blocks")
    void anLz4BlockThatDoesNotMakeItsPagesIsDataLossAndWritesNothing(Transport transport, String what, PageBatch bad)
            throws Exception {
        sessions.put(TOKEN, Delegating.acceptingLz4(writer));
        start(transport);
        Reply reply = new Reply();
        StreamObserver<PageBatch> requests = generatedStream(reply);
        requests.onNext(bad);
        Status s = reply.awaitError();
        assertEquals(Status.Code.DATA_LOSS, s.getCode(), what + ": " + s);
        assertTrue(s.getDescription().contains("LZ4 data"), s.getDescription());
        assertTrue(TestMemory.allZero(dst), "nothing of the batch written");
        assertEquals(0, writer.pagesWritten());
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void aGeneratedLz4BatchLands(Transport transport) throws Exception {
        sessions.put(TOKEN, Delegating.acceptingLz4(writer));
        start(transport);
        Reply reply = new Reply();
        StreamObserver<PageBatch> requests = generatedStream(reply);
        requests.onNext(PageBatch.newBuilder().setRound(1).addPageRuns(range(8 * PAGE, 2)).setEndOfRound(true)
                .setDataCodec(PageBatch.DataCodec.LZ4).setData(lz4(filled(2, 0x44))).build());
        requests.onCompleted();
        reply.awaitCompleted();
        assertEquals(2L * PAGE, reply.acks.get(0).getBytesReceived());
        assertEquals(0x4444444444444444L, dst.getLong(9 * PAGE + 4088));
        assertEquals(dst.digest(), dstHashes.digest());
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void roundGoingBackwardsAndStreamIndexChangeAreRejected(Transport transport) throws Exception {
        start(transport);
        Reply reply = new Reply();
        StreamObserver<PageBatch> requests = generatedStream(reply);
        requests.onNext(validBatch(true).toBuilder().setRound(2).build());
        requests.onNext(validBatch(true).toBuilder().setRound(1).build());
        assertTrue(reply.awaitError().getDescription().contains("went backwards"));

        Reply reply2 = new Reply();
        StreamObserver<PageBatch> requests2 = generatedStream(reply2);
        requests2.onNext(validBatch(false).toBuilder().setStreamIndex(1).build());
        requests2.onNext(validBatch(false).toBuilder().setStreamIndex(2).build());
        assertTrue(reply2.awaitError().getDescription().contains("stream_index changed"));
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void serverShutdownMidRoundFailsTheRoundPromptly(Transport transport) throws Exception {
        CountDownLatch entered = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        sessions.put(TOKEN, new Delegating(writer) {
            @Override
            public void writePages(long gpa, int pages, ByteBuffer data) {
                entered.countDown();
                try {
                    release.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                super.writePages(gpa, pages, data);
            }
        });
        start(transport);
        TestMemory.fillRandom(src, 5, 0);
        try (PageSender sender = new PageSender(endpoint.channel(), TOKEN, src, srcHashes, 2,
                BandwidthLimiter.unlimited())) {
            Future<RoundStats> round = executor.submit(() -> sender.sendRound(1, DirtyBitmap.full(src), () -> false));
            assertTrue(entered.await(10, TimeUnit.SECONDS));
            long t0 = System.nanoTime();
            endpoint.server().shutdownNow();
            ExecutionException e = assertThrows(ExecutionException.class, () -> round.get(10, TimeUnit.SECONDS));
            Duration took = Duration.ofNanos(System.nanoTime() - t0);
            PageTransferException pte = assertInstanceOf(PageTransferException.class, e.getCause());
            assertTrue(pte.status().getCode() == Status.Code.UNAVAILABLE
                    || pte.status().getCode() == Status.Code.CANCELLED, pte.getMessage());
            assertTrue(took.toMillis() < 3000, "took " + took);
            PageTransferException again = assertThrows(PageTransferException.class,
                    () -> sender.sendRound(2, DirtyBitmap.full(src), () -> false));
            assertEquals(Status.Code.FAILED_PRECONDITION, again.status().getCode());
        } finally {
            release.countDown();
        }
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void sessionAbortEndsTheStreamWithItsStatus(Transport transport) throws Exception {
        sessions.put(TOKEN, new Delegating(writer) {
            @Override
            public void writePages(long gpa, int pages, ByteBuffer data) {
                throw Status.CANCELLED.withDescription("migration aborted").asRuntimeException();
            }
        });
        start(transport);
        TestMemory.fillRandom(src, 6, 0);
        try (PageSender sender = new PageSender(endpoint.channel(), TOKEN, src, srcHashes, 2,
                BandwidthLimiter.unlimited())) {
            PageTransferException e = assertThrows(PageTransferException.class,
                    () -> sender.sendRound(1, DirtyBitmap.full(src), () -> false));
            assertEquals(Status.Code.CANCELLED, e.status().getCode());
            assertEquals("migration aborted", e.status().getDescription());
        }
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void sessionNotAcceptingPagesIsFailedPrecondition(Transport transport) throws Exception {
        sessions.put(TOKEN, new Delegating(writer) {
            @Override
            public void zeroPages(long gpa, long pages) {
                throw new IllegalStateException("migration is switching over");
            }
        });
        start(transport);
        try (PageSender sender = new PageSender(endpoint.channel(), TOKEN, src, srcHashes, 1,
                BandwidthLimiter.unlimited())) {
            PageTransferException e = assertThrows(PageTransferException.class,
                    () -> sender.sendRound(1, DirtyBitmap.full(src), () -> false)); // all zero: zero ranges only
            assertEquals(Status.Code.FAILED_PRECONDITION, e.status().getCode());
        }
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void cancellingTheRoundStopsItPromptly(Transport transport) throws Exception {
        start(transport);
        TestMemory.fillRandom(src, 7, 0);
        AtomicBoolean cancelled = new AtomicBoolean();
        // 2 MiB/s: the 8 MiB round would take ~4 s.
        try (PageSender sender = new PageSender(endpoint.channel(), TOKEN, src, srcHashes, 2,
                BandwidthLimiter.bytesPerSecond(2 << 20))) {
            Future<RoundStats> round = executor.submit(() -> sender.sendRound(1, DirtyBitmap.full(src), cancelled::get));
            Thread.sleep(200);
            long t0 = System.nanoTime();
            cancelled.set(true);
            ExecutionException e = assertThrows(ExecutionException.class, () -> round.get(10, TimeUnit.SECONDS));
            Duration took = Duration.ofNanos(System.nanoTime() - t0);
            PageTransferException pte = assertInstanceOf(PageTransferException.class, e.getCause());
            assertEquals(Status.Code.CANCELLED, pte.status().getCode());
            assertTrue(took.toMillis() < 1500, "took " + took);
        }
    }

    /** Collects what the destination answers on a generated-stub stream. */
    static final class Reply implements StreamObserver<PageAck> {
        final List<PageAck> acks = new ArrayList<>();
        final CompletableFuture<Status> done = new CompletableFuture<>();

        @Override
        public synchronized void onNext(PageAck value) {
            acks.add(value);
        }

        @Override
        public void onError(Throwable t) {
            done.complete(Status.fromThrowable(t));
        }

        @Override
        public void onCompleted() {
            done.complete(Status.OK);
        }

        Status awaitError() throws Exception {
            Status s = done.get(10, TimeUnit.SECONDS);
            assertTrue(!s.isOk(), "expected the stream to fail");
            return s;
        }

        void awaitCompleted() throws Exception {
            Status s = done.get(10, TimeUnit.SECONDS);
            if (!s.isOk()) {
                throw new StatusRuntimeException(s);
            }
        }
    }

    /** An IncomingPages that forwards to another; tests override single methods to inject failures. */
    static class Delegating implements IncomingPages {
        private final IncomingPages to;

        Delegating(IncomingPages to) {
            this.to = to;
        }

        /** {@code to} in a session that accepted LZ4_PAGE_COMPRESSION. */
        static IncomingPages acceptingLz4(IncomingPages to) {
            return new Delegating(to) {
                @Override
                public boolean acceptsCompressedData() {
                    return true;
                }
            };
        }

        @Override
        public GuestMemory memory() {
            return to.memory();
        }

        @Override
        public PageHashes hashes() {
            return to.hashes();
        }

        @Override
        public void writePages(long gpa, int pages, ByteBuffer data) {
            to.writePages(gpa, pages, data);
        }

        @Override
        public void zeroPages(long gpa, long pages) {
            to.zeroPages(gpa, pages);
        }
    }
}
