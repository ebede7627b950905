package dev.ferry.dataplane.postcopy;

import static dev.ferry.dataplane.postcopy.PostcopyFixtures.MIB;
import static dev.ferry.dataplane.postcopy.PostcopyFixtures.PAGE;
import static dev.ferry.dataplane.postcopy.PostcopyFixtures.TOKEN;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.ferry.dataplane.Transport;
import dev.ferry.dataplane.Transport.Endpoint;
import dev.ferry.dataplane.postcopy.PostcopyFixtures.Sessions;
import dev.ferry.memory.GuestMemory;
import dev.ferry.v1.FerryMetadata;
import dev.ferry.v1.PageFaultReply;
import dev.ferry.v1.PageFaultRequest;
import dev.ferry.v1.PostcopyPagerServiceGrpc;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The source's PostcopyPagerService, seen by the generated client (so the hand-written reply encoding is checked
 * against protobuf's own parser) and by {@link GrpcPageFetcher}. No userfaultfd needed.
 */
@Timeout(30)
class PagerServerTest {
    private GuestMemory source;
    private MemoryPageSource pageSource;
    private Sessions sessions;
    private final List<AutoCloseable> closeables = new ArrayList<>();

    @BeforeEach
    void setUp() {
        source = PostcopyFixtures.randomMemory(8 * MIB, 2, 5, 10);
        pageSource = new MemoryPageSource(source);
        sessions = new Sessions().with(TOKEN, pageSource);
    }

    @AfterEach
    void tearDown() throws Exception {
        for (int i = closeables.size() - 1; i >= 0; i--) {
            closeables.get(i).close();
        }
        pageSource.close();
        source.close();
    }

    private Endpoint endpoint(Transport t) throws Exception {
        Endpoint e = t.start(PagerServer.service(sessions));
        closeables.add(e);
        return e;
    }

    private static Channel withToken(Channel ch, String token) {
        Metadata h = new Metadata();
        if (token != null) {
            h.put(FerryMetadata.SESSION_TOKEN, token);
        }
        return io.grpc.ClientInterceptors.intercept(ch, MetadataUtils.newAttachHeadersInterceptor(h));
    }

    private static PageFaultRequest req(long id, long gpa, long len) {
        return PageFaultRequest.newBuilder().setFaultId(id).setGuestPhysicalAddress(gpa).setLengthBytes(len).build();
    }

    private ByteString bytesOf(long gpa, int len) {
        return ByteString.copyFrom(source.buffer(gpa, len));
    }

    private static Status.Code codeOf(Runnable r) {
        return assertThrows(StatusRuntimeException.class, r::run).getStatus().getCode();
    }

    // unary ----------------------------------------------------------------------------------------------------------

    @ParameterizedTest
    @EnumSource(Transport.class)
    void unaryAnswersDataZeroAndHugePages(Transport transport) throws Exception {
        var stub = PostcopyPagerServiceGrpc.newBlockingStub(withToken(endpoint(transport).channel(), TOKEN));
        long data = PostcopyFixtures.pages(source, false)[7];
        long zero = PostcopyFixtures.pages(source, true)[3];

        PageFaultReply r = stub.pageFault(req(11, data, PAGE));
        assertEquals(11, r.getFaultId());
        assertEquals(data, r.getGuestPhysicalAddress());
        assertTrue(r.getLast());
        assertFalse(r.getZero());
        assertEquals(bytesOf(data, PAGE), r.getData());

        PageFaultReply z = stub.pageFault(req(12, zero, PAGE));
        assertTrue(z.getZero() && z.getLast(), z.toString());
        assertTrue(z.getData().isEmpty());
        assertEquals(zero, z.getGuestPhysicalAddress());

        PageFaultReply huge = stub.pageFault(req(0, 2 * MIB, 2 * MIB)); // fault_id 0 is a valid id too
        assertEquals(0, huge.getFaultId());
        assertEquals(bytesOf(2 * MIB, (int) (2 * MIB)), huge.getData());
        assertTrue(huge.getLast());
        assertEquals(3, pageSource.faultsServed());
        assertEquals(1 + 1 + 512, pageSource.pagesServed());
    }

    // (5) errors -----------------------------------------------------------------------------------------------------

    @ParameterizedTest
    @EnumSource(Transport.class)
    void badTokenIsUnauthenticated(Transport transport) throws Exception {
        Channel ch = endpoint(transport).channel();
        assertEquals(Status.Code.UNAUTHENTICATED,
                codeOf(() -> PostcopyPagerServiceGrpc.newBlockingStub(withToken(ch, "wrong")).pageFault(req(1, 0, PAGE))));
        assertEquals(Status.Code.UNAUTHENTICATED,
                codeOf(() -> PostcopyPagerServiceGrpc.newBlockingStub(withToken(ch, null)).pageFault(req(1, 0, PAGE))));

        Replies replies = new Replies();
        StreamObserver<PageFaultRequest> requests =
                PostcopyPagerServiceGrpc.newStub(withToken(ch, "wrong")).streamPageFaults(replies);
        requests.onNext(req(1, 0, PAGE));
        assertEquals(Status.Code.UNAUTHENTICATED, replies.end().getCode());
        assertEquals(0, pageSource.faultsServed());

        // the fetcher reports it through its futures
        GrpcPageFetcher f = new GrpcPageFetcher(ch, "wrong");
        ExecutionException e = assertThrows(ExecutionException.class, () -> f.fetch(0, 1).get(5, TimeUnit.SECONDS));
        assertEquals(Status.Code.UNAUTHENTICATED, Status.fromThrowable(e.getCause()).getCode());
        f.close();
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void badRequestsAreRefused(Transport transport) throws Exception {
        var stub = PostcopyPagerServiceGrpc.newBlockingStub(withToken(endpoint(transport).channel(), TOKEN));
        assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> stub.pageFault(req(1, 100, PAGE))), "misaligned");
        assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> stub.pageFault(req(1, PAGE, 2 * MIB))),
                "not aligned to its length");
        assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> stub.pageFault(req(1, 0, 8192))), "not a page size");
        assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> stub.pageFault(req(1, 0, 0))), "no length");
        assertEquals(Status.Code.INVALID_ARGUMENT, codeOf(() -> stub.pageFault(req(1, 0, 1L << 30))),
                "1 GiB only on the stream");
        // outside guest memory: OUT_OF_RANGE, as postcopy_pager_service.proto specifies
        assertEquals(Status.Code.OUT_OF_RANGE, codeOf(() -> stub.pageFault(req(1, source.totalBytes(), PAGE))));
        assertEquals(Status.Code.OUT_OF_RANGE, codeOf(() -> stub.pageFault(req(1, -PAGE, PAGE))));
        assertEquals(Status.Code.OUT_OF_RANGE, codeOf(() -> stub.pageFault(req(1, 8 * MIB, 2 * MIB))));

        // on the stream an invalid fault ends the stream
        Replies replies = new Replies();
        StreamObserver<PageFaultRequest> requests = PostcopyPagerServiceGrpc
                .newStub(withToken(endpoint(transport).channel(), TOKEN)).streamPageFaults(replies);
        long data = PostcopyFixtures.pages(source, false)[0];
        requests.onNext(req(1, data, PAGE));
        requests.onNext(req(2, data + 1, PAGE));
        Status end = replies.end();
        assertEquals(Status.Code.INVALID_ARGUMENT, end.getCode(), end.toString());
        assertEquals(1, pageSource.faultsServed(), "the valid fault before it was answered");
    }

    @Test
    void closedOrInactiveSessionIsFailedPrecondition() throws Exception {
        sessions.with("not-postcopy", new PageSource() {
            @Override
            public GuestMemory memory() {
                throw new IllegalStateException("migration is in phase PRECOPY");
            }

            @Override
            public void faulted(long gpa, long pages) {
            }
        });
        Channel ch = endpoint(Transport.IN_PROCESS).channel();
        assertEquals(Status.Code.FAILED_PRECONDITION, codeOf(() -> PostcopyPagerServiceGrpc
                .newBlockingStub(withToken(ch, "not-postcopy")).pageFault(req(1, 0, PAGE))));
        pageSource.close();
        assertEquals(Status.Code.FAILED_PRECONDITION, codeOf(() -> PostcopyPagerServiceGrpc
                .newBlockingStub(withToken(ch, TOKEN)).pageFault(req(1, 0, PAGE))));
        Replies replies = new Replies();
        PostcopyPagerServiceGrpc.newStub(withToken(ch, TOKEN)).streamPageFaults(replies).onNext(req(1, 0, PAGE));
        assertEquals(Status.Code.FAILED_PRECONDITION, replies.end().getCode());
    }

    // stream ---------------------------------------------------------------------------------------------------------

    @ParameterizedTest
    @EnumSource(Transport.class)
    void streamAnswersPipelinedFaultsById(Transport transport) throws Exception {
        Replies replies = new Replies();
        StreamObserver<PageFaultRequest> requests = PostcopyPagerServiceGrpc
                .newStub(withToken(endpoint(transport).channel(), TOKEN)).streamPageFaults(replies);
        long[] data = PostcopyFixtures.pages(source, false);
        long[] zero = PostcopyFixtures.pages(source, true);
        Map<Long, Long> expected = new HashMap<>();
        for (int i = 0; i < 100; i++) { // far more than the server reads ahead
            long gpa = i % 4 == 0 ? zero[i] : data[i * 13];
            requests.onNext(req(1000 + i, gpa, PAGE));
            expected.put(1000L + i, gpa);
        }
        requests.onNext(req(7, 4 * MIB, 2 * MIB));
        expected.put(7L, 4 * MIB);
        requests.onCompleted();
        assertTrue(replies.end().isOk());
        assertEquals(expected.size(), replies.received.size());
        for (PageFaultReply r : replies.received) {
            long gpa = expected.remove(r.getFaultId());
            assertEquals(gpa, r.getGuestPhysicalAddress());
            assertTrue(r.getLast());
            boolean isZero = PostcopyFixtures.isZeroPage(source, gpa) && r.getFaultId() != 7;
            assertEquals(isZero, r.getZero());
            if (!isZero) {
                assertEquals(bytesOf(gpa, r.getFaultId() == 7 ? (int) (2 * MIB) : PAGE), r.getData());
            }
        }
        assertTrue(expected.isEmpty());
        assertEquals(101, pageSource.faultsServed());
    }

    @Test
    void repliesWaitForTheClientAndADuplicatePendingIdEndsTheStream() throws Exception {
        Channel ch = endpoint(Transport.IN_PROCESS).channel();
        ClientCall<PageFaultRequest, PageFaultReply> call =
                ch.newCall(PostcopyPagerServiceGrpc.getStreamPageFaultsMethod(), CallOptions.DEFAULT);
        Replies replies = new Replies();
        Metadata h = new Metadata();
        h.put(FerryMetadata.SESSION_TOKEN, TOKEN);
        call.start(replies.listener(), h); // requests no reply: the server must hold its answers
        long gpa = PostcopyFixtures.pages(source, false)[1];
        call.sendMessage(req(5, gpa, PAGE));
        Thread.sleep(200);
        assertTrue(replies.received.isEmpty());
        assertEquals(0, pageSource.faultsServed(), "not answered while the client reads nothing");
        call.request(1);
        assertTrue(PostcopyFixtures.eventually(5000, () -> replies.received.size() == 1));
        assertEquals(bytesOf(gpa, PAGE), replies.received.get(0).getData());

        call.sendMessage(req(6, gpa, PAGE));
        call.sendMessage(req(6, gpa + PAGE, PAGE)); // 6 is still pending: not answered for lack of requests
        Status end = replies.end();
        assertEquals(Status.Code.INVALID_ARGUMENT, end.getCode());
        assertTrue(end.getDescription().contains("already pending"), end.getDescription());
    }

    // GrpcPageFetcher ------------------------------------------------------------------------------------------------

    @ParameterizedTest
    @EnumSource(Transport.class)
    void fetcherFetchesDataZeroAndHugePages(Transport transport) throws Exception {
        try (GrpcPageFetcher f = new GrpcPageFetcher(endpoint(transport).channel(), TOKEN)) {
            long data = PostcopyFixtures.pages(source, false)[9];
            long zero = PostcopyFixtures.pages(source, true)[9];
            List<CompletableFuture<FetchedPage>> all = new ArrayList<>();
            for (int i = 0; i < 50; i++) {
                all.add(f.fetch(data, 1)); // the same page 50 times, pipelined: all answered
            }
            CompletableFuture<FetchedPage> z = f.fetch(zero, 1);
            CompletableFuture<FetchedPage> huge = f.fetch(2 * MIB, 512);
            for (CompletableFuture<FetchedPage> c : all) {
                FetchedPage p = c.get(5, TimeUnit.SECONDS);
                assertEquals(data, p.gpa());
                assertFalse(p.zero());
                assertEquals(source.buffer(data, PAGE), p.data());
            }
            FetchedPage zp = z.get(5, TimeUnit.SECONDS);
            assertTrue(zp.zero());
            assertNull(zp.data());
            FetchedPage hp = huge.get(5, TimeUnit.SECONDS);
            assertEquals(512, hp.pages());
            assertEquals(source.buffer(2 * MIB, (int) (2 * MIB)), hp.data());
            assertEquals(52, f.requestsSent());
            assertEquals(0, f.pendingFetches());
            assertThrows(IllegalArgumentException.class, () -> f.fetch(0, 3));
            assertThrows(IllegalArgumentException.class, () -> f.fetch(PAGE, 512));
        }
    }

    @Test
    void fetcherAfterCloseFailsCancelled() throws Exception {
        GrpcPageFetcher f = new GrpcPageFetcher(endpoint(Transport.IN_PROCESS).channel(), TOKEN);
        f.close();
        ExecutionException e = assertThrows(ExecutionException.class, () -> f.fetch(0, 1).get(5, TimeUnit.SECONDS));
        assertEquals(Status.Code.CANCELLED, Status.fromThrowable(e.getCause()).getCode());
        f.close();
    }

    /** A 1 GiB fault comes in 2 MiB pieces, assembled by the fetcher; an all-hole 1 GiB page is one zero reply. */
    @Test
    void oneGibFaults() throws Exception {
        long gib = 1L << 30;
        try (GuestMemory big = GuestMemory.allocate(List.of(new GuestMemory.RegionLayout(0, 0, gib),
                new GuestMemory.RegionLayout(1, gib, gib)));
                MemoryPageSource src = new MemoryPageSource(big)) {
            big.putLong(8, 0x1122334455667788L);
            big.putLong(700 * MIB + 4088, -1L);
            big.putLong(gib - 8, 42);
            String name = InProcessServerBuilder.generateName();
            Server server = InProcessServerBuilder.forName(name).directExecutor()
                    .addService(PagerServer.service(new Sessions().with(TOKEN, src))).build().start();
            ManagedChannel ch = InProcessChannelBuilder.forName(name).directExecutor().build();
            try (GrpcPageFetcher f = new GrpcPageFetcher(ch, TOKEN)) {
                FetchedPage zero = f.fetch(gib, 262144).get(10, TimeUnit.SECONDS);
                assertTrue(zero.zero());
                FetchedPage p = f.fetch(0, 262144).get(20, TimeUnit.SECONDS);
                assertEquals(gib, p.data().remaining());
                ByteBuffer d = p.data().order(java.nio.ByteOrder.nativeOrder());
                assertEquals(0x1122334455667788L, d.getLong(8));
                assertEquals(-1L, d.getLong((int) (700 * MIB + 4088)));
                assertEquals(42L, d.getLong((int) (gib - 8)));
                // everything else is zero (checked without reading, and so populating, the sparse source)
                d.putLong(8, 0).putLong((int) (700 * MIB + 4088), 0).putLong((int) (gib - 8), 0);
                ByteBuffer zeros = ByteBuffer.allocate((int) (2 * MIB));
                for (int off = 0; off < gib; off += (int) (2 * MIB)) {
                    assertEquals(-1, d.slice(off, (int) (2 * MIB)).mismatch(zeros), "piece at " + off);
                }
            } finally {
                ch.shutdownNow();
                server.shutdownNow();
                server.awaitTermination(5, TimeUnit.SECONDS);
            }
            assertEquals(2, src.faultsServed());
        }
    }

    @Test
    void fetcherFailsEverythingOnAnUnexpectedReply() throws Exception {
        // A broken source: answers every fault with somebody else's fault_id.
        String name = InProcessServerBuilder.generateName();
        Server server = InProcessServerBuilder.forName(name).addService(new PostcopyPagerServiceGrpc.PostcopyPagerServiceImplBase() {
            @Override
            public StreamObserver<PageFaultRequest> streamPageFaults(StreamObserver<PageFaultReply> out) {
                return new StreamObserver<>() {
                    @Override
                    public void onNext(PageFaultRequest r) {
                        if (r.getFaultId() == 3) {
                            out.onNext(PageFaultReply.newBuilder().setFaultId(99).setZero(true).setLast(true).build());
                        }
                    }

                    @Override
                    public void onError(Throwable t) {
                    }

                    @Override
                    public void onCompleted() {
                        out.onCompleted();
                    }
                };
            }
        }).build().start();
        ManagedChannel ch = InProcessChannelBuilder.forName(name).build();
        closeables.add(() -> {
            ch.shutdownNow();
            server.shutdownNow();
        });
        GrpcPageFetcher f = new GrpcPageFetcher(ch, TOKEN);
        CompletableFuture<FetchedPage> a = f.fetch(0, 1);
        CompletableFuture<FetchedPage> b = f.fetch(PAGE, 1);
        CompletableFuture<FetchedPage> c = f.fetch(2 * PAGE, 1);
        for (CompletableFuture<FetchedPage> x : List.of(a, b, c)) {
            ExecutionException e = assertThrows(ExecutionException.class, () -> x.get(5, TimeUnit.SECONDS));
            assertEquals(Status.Code.INTERNAL, Status.fromThrowable(e.getCause()).getCode());
        }
        assertEquals(Status.Code.INTERNAL, f.failure().getCode());
        f.close();
    }

    /** Collects the replies of a stream and its end. */
    static final class Replies implements StreamObserver<PageFaultReply> {
        final List<PageFaultReply> received = java.util.Collections.synchronizedList(new ArrayList<>());
        final LinkedBlockingQueue<Status> ended = new LinkedBlockingQueue<>();

        @Override
        public void onNext(PageFaultReply r) {
            received.add(r);
        }

        @Override
        public void onError(Throwable t) {
            ended.add(Status.fromThrowable(t));
        }

        @Override
        public void onCompleted() {
            ended.add(Status.OK);
        }

        Status end() throws InterruptedException {
            Status s = ended.poll(10, TimeUnit.SECONDS);
            assertTrue(s != null, "stream did not end");
            return s;
        }

        ClientCall.Listener<PageFaultReply> listener() {
            return new ClientCall.Listener<>() {
                @Override
                public void onMessage(PageFaultReply message) {
                    onNext(message);
                }

                @Override
                public void onClose(Status status, Metadata trailers) {
                    ended.add(status);
                }
            };
        }
    }

    @Test
    void generatedAndHandWrittenEncodingsAgree() throws Exception {
        // The hand-written reply, parsed by protobuf, equals the message protobuf would build.
        long gpa = PostcopyFixtures.pages(source, false)[2];
        var region = source.regionOf(gpa);
        OutgoingReply out = OutgoingReply.data(1L << 40, gpa, true, pageSource, region, PAGE, false);
        PageFaultReply parsed = PageFaultReply.parseFrom(OutgoingReply.MARSHALLER.stream(out));
        PageFaultReply expected = PageFaultReply.newBuilder().setFaultId(1L << 40).setGuestPhysicalAddress(gpa)
                .setLast(true).setData(bytesOf(gpa, PAGE)).build();
        assertEquals(expected, parsed);
        assertArrayEquals(expected.toByteArray(), OutgoingReply.MARSHALLER.stream(out).readAllBytes());
        // and the hand-written parser reads protobuf's encoding
        IncomingReply in = IncomingReply.MARSHALLER.parse(new java.io.ByteArrayInputStream(expected.toByteArray()));
        assertNull(in.error);
        assertEquals(1L << 40, in.faultId);
        assertEquals(gpa, in.gpa);
        assertTrue(in.last);
        assertArrayEquals(expected.getData().toByteArray(), in.data);
        IncomingReply bad = IncomingReply.MARSHALLER.parse(new java.io.ByteArrayInputStream(new byte[] {(byte) 0x7a, 9}));
        assertTrue(bad.error != null);
    }
}
