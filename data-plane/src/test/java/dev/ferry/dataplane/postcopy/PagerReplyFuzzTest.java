package dev.ferry.dataplane.postcopy;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.UnknownFieldSet;
import dev.ferry.dataplane.RawBytes;
import dev.ferry.dataplane.Transport;
import dev.ferry.v1.PageFaultReply;
import dev.ferry.v1.PageFaultRequest;
import dev.ferry.v1.PostcopyPagerServiceGrpc;
import io.grpc.MethodDescriptor;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.ProtoUtils;
import io.grpc.stub.ServerCalls;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;

/**
 * Coverage-guided fuzzing of the postcopy pager's reply wire format on the destination (docs/fuzzing.md):
 * {@link IncomingReply#MARSHALLER} and {@link GrpcPageFetcher}'s checks of what the source answers.
 *
 * <p>Each input is 1 to 4 raw PageFaultReply messages that a fake source sends in answer to one 4 KiB fetch (fault_id
 * 1, gpa {@link #GPA}), then ends the call OK. Properties: the hand-written parser never throws and never accepts a
 * message that protobuf reads differently; the fetch ends either with a page that one of the replies, as protobuf
 * reads it, carries for that fault, or with a StatusRuntimeException of INTERNAL (a bad reply) or UNAVAILABLE (the
 * source ended the stream), never another exception. Input layout: the messages as {@link RawBytes#split} reads them.
 * Seeds: {@link PagerReplyFuzzSeedsTest}.
 */
class PagerReplyFuzzTest {
    static final long GPA = 0x7000;
    static final Set<Status.Code> ALLOWED = Set.of(Status.Code.INTERNAL, Status.Code.UNAVAILABLE);

    /** What the fake source answers to the next fault (one input at a time). */
    private static final AtomicReference<List<byte[]>> script = new AtomicReference<>(List.of());
    private static Transport.Endpoint endpoint;

    private static synchronized Transport.Endpoint endpoint() throws IOException {
        if (endpoint == null) {
            MethodDescriptor<PageFaultRequest, byte[]> method = PostcopyPagerServiceGrpc.getStreamPageFaultsMethod()
                    .toBuilder(ProtoUtils.marshaller(PageFaultRequest.getDefaultInstance()), RawBytes.MARSHALLER)
                    .build();
            ServerServiceDefinition fakeSource = ServerServiceDefinition
                    .builder(PostcopyPagerServiceGrpc.SERVICE_NAME)
                    .addMethod(method, ServerCalls.<PageFaultRequest, byte[]>asyncBidiStreamingCall(
                            (StreamObserver<byte[]> replies) -> new StreamObserver<PageFaultRequest>() {
                        @Override
                        public void onNext(PageFaultRequest request) {
                            script.get().forEach(replies::onNext);
                            replies.onCompleted();
                        }

                        @Override
                        public void onError(Throwable t) {
                        }

                        @Override
                        public void onCompleted() {
                        }
                    }))
                    .build();
            endpoint = Transport.IN_PROCESS.start(fakeSource);
        }
        return endpoint;
    }

    @AfterAll
    static synchronized void tearDown() {
        if (endpoint != null) {
            endpoint.close();
            endpoint = null;
        }
    }

    @FuzzTest(maxDuration = "10s")
    void repliesYieldThePageOrAStatus(byte[] input) throws Exception {
        List<byte[]> messages = RawBytes.split(input, 0, 4);
        List<PageFaultReply> reference = new ArrayList<>();
        for (byte[] m : messages) {
            PageFaultReply ref = checkAgainstProtobuf(m);
            if (ref != null) {
                reference.add(ref);
            }
        }

        script.set(messages);
        GrpcPageFetcher fetcher = new GrpcPageFetcher(endpoint().channel(), "token", Runnable::run);
        try {
            CompletableFuture<FetchedPage> f = fetcher.fetch(GPA, 1);
            FetchedPage page;
            try {
                page = f.get(60, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                StatusRuntimeException s = assertInstanceOf(StatusRuntimeException.class, e.getCause(),
                        "the fetch failed with something other than a status");
                assertTrue(ALLOWED.contains(s.getStatus().getCode()), "the fetch failed with " + s.getStatus());
                assertNotNull(fetcher.failure(), "a failed fetch leaves the fetcher failed");
                return;
            }
            assertEquals(GPA, page.gpa());
            assertEquals(1, page.pages());
            byte[] got = page.zero() ? null : new byte[PagerWire.PAGE_SIZE];
            if (got != null) {
                page.data().duplicate().get(got);
            }
            for (PageFaultReply r : reference) {
                if (r.getFaultId() == 1 && r.getLast() && (r.getZero() ? got == null
                        : r.getGuestPhysicalAddress() == GPA && got != null && Arrays.equals(got, r.getData()
                        .toByteArray()))) {
                    return;
                }
            }
            fail("the fetch returned a page no reply carried for it (zero=" + page.zero() + ")");
        } finally {
            fetcher.close();
        }
    }

    /**
     * Parses {@code m} with {@link IncomingReply#MARSHALLER} and with protobuf; returns protobuf's reading, or null.
     * Fails if the hand-written parser accepts what protobuf refuses or reads differently, or refuses the canonical
     * encoding of a reply protobuf reads.
     */
    private static PageFaultReply checkAgainstProtobuf(byte[] m) {
        IncomingReply r = IncomingReply.MARSHALLER.parse(RawBytes.stream(m));
        PageFaultReply ref;
        try {
            ref = PageFaultReply.parseFrom(m);
        } catch (InvalidProtocolBufferException e) {
            if (r.error == null) {
                fail("IncomingReply accepted a message protobuf refuses: " + e.getMessage());
            }
            return null;
        }
        if (r.error != null) {
            // Stricter than protobuf-java is fine (it truncates overlong tags, accepts groups): but the canonical
            // encoding of what protobuf read must be accepted, unless its data is over the limit.
            byte[] canonical = ref.toBuilder().setUnknownFields(UnknownFieldSet.getDefaultInstance()).build()
                    .toByteArray();
            IncomingReply again = IncomingReply.MARSHALLER.parse(RawBytes.stream(canonical));
            if (ref.getData().size() > PagerWire.MAX_PIECE) {
                assertNotNull(again.error, "IncomingReply accepted data over the limit");
                return ref;
            }
            assertNull(again.error, "IncomingReply refused a canonical reply");
            r = again;
        }
        assertEquals(ref.getFaultId(), r.faultId);
        assertEquals(ref.getGuestPhysicalAddress(), r.gpa);
        assertEquals(ref.getZero(), r.zero);
        assertEquals(ref.getLast(), r.last);
        assertArrayEquals(ref.getData().isEmpty() ? null : ref.getData().toByteArray(), r.data);
        return ref;
    }
}
