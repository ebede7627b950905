package dev.ferry.control.edge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.ServerCalls;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.Iterator;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The server's own time limits, with short values: a unary call past its deadline is closed and its Context
 * cancelled; a silent client stream is closed; a stream that keeps talking, and a server stream whose client is
 * silent by design, are not.
 */
class CallTimeoutsTest {
    private static final Duration LIMIT = Duration.ofMillis(300);
    private static final MethodDescriptor.Marshaller<byte[]> BYTES = dev.ferry.control.RawBytes.MARSHALLER;
    private static final MethodDescriptor<byte[], byte[]> WAIT = MethodDescriptor.<byte[], byte[]>newBuilder()
            .setType(MethodDescriptor.MethodType.UNARY).setFullMethodName("test.Slow/Wait")
            .setRequestMarshaller(BYTES).setResponseMarshaller(BYTES).build();
    private static final MethodDescriptor<byte[], byte[]> ECHO = MethodDescriptor.<byte[], byte[]>newBuilder()
            .setType(MethodDescriptor.MethodType.BIDI_STREAMING).setFullMethodName("test.Slow/Echo")
            .setRequestMarshaller(BYTES).setResponseMarshaller(BYTES).build();

    private final CountDownLatch waitCancelled = new CountDownLatch(1);
    private final java.util.concurrent.atomic.AtomicBoolean waitStarted = new java.util.concurrent.atomic.AtomicBoolean();
    private final HealthStatusManager health = new HealthStatusManager();
    private EdgeGuard edge;
    private Server server;
    private ManagedChannel channel;

    @BeforeEach
    void start() throws Exception {
        edge = new EdgeGuard(LIMIT, m -> LIMIT, new RefusalLog(Duration.ofSeconds(10), System::nanoTime, l -> { }));
        ServerServiceDefinition slow = ServerServiceDefinition.builder("test.Slow")
                .addMethod(WAIT, ServerCalls.asyncUnaryCall((req, out) ->
                        // Never answers: only the server's deadline can end this call.
                        {
                            waitStarted.set(true);
                            Context.current().addListener(c -> waitCancelled.countDown(), Runnable::run);
                        }))
                .addMethod(ECHO, ServerCalls.asyncBidiStreamingCall(out -> new StreamObserver<byte[]>() {
                    @Override
                    public void onNext(byte[] value) {
                        out.onNext(value);
                    }

                    @Override
                    public void onError(Throwable t) {}

                    @Override
                    public void onCompleted() {
                        out.onCompleted();
                    }
                }))
                .build();
        String name = InProcessServerBuilder.generateName();
        server = InProcessServerBuilder.forName(name).addService(edge.guard(slow, m -> 1 << 20))
                .addService(edge.guard(health.getHealthService().bindService(), m -> 1 << 20)).build().start();
        channel = InProcessChannelBuilder.forName(name).build();
    }

    @AfterEach
    void stop() throws Exception {
        channel.shutdownNow();
        server.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
        edge.close();
    }

    @Test
    void aUnaryCallWithoutAClientDeadlineEndsAtTheServersAndItsContextIsCancelled() throws Exception {
        long t0 = System.nanoTime();
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
                () -> ClientCalls.blockingUnaryCall(channel, WAIT, CallOptions.DEFAULT, new byte[0]));
        assertEquals(Status.Code.DEADLINE_EXCEEDED, e.getStatus().getCode());
        assertTrue(e.getStatus().getDescription().contains("test.Slow/Wait"), e.getStatus().getDescription());
        assertTrue(System.nanoTime() - t0 >= LIMIT.toNanos(), "not before the limit");
        // On a loaded machine the deadline can pass before the handler was ever called; then there is no
        // handler whose Context could be left running.
        assertTrue(waitCancelled.await(10, TimeUnit.SECONDS) || !waitStarted.get(), "the handler's Context was cancelled");
    }

    @Test
    void aSilentClientStreamIsClosed() throws Exception {
        CompletableFuture<Status> end = new CompletableFuture<>();
        ClientCall<byte[], byte[]> call = channel.newCall(ECHO, CallOptions.DEFAULT);
        call.start(new ClientCall.Listener<>() {
            @Override
            public void onClose(Status status, io.grpc.Metadata trailers) {
                end.complete(status);
            }
        }, new io.grpc.Metadata());
        call.request(1);
        Status s = end.get(10, TimeUnit.SECONDS);
        assertEquals(Status.Code.DEADLINE_EXCEEDED, s.getCode());
        assertTrue(s.getDescription().contains("sent no request message"), s.getDescription());
    }

    @Test
    void aStreamThatKeepsTalkingOutlivesTheLimit() throws Exception {
        CompletableFuture<Status> end = new CompletableFuture<>();
        ClientCall<byte[], byte[]> call = channel.newCall(ECHO, CallOptions.DEFAULT);
        call.start(new ClientCall.Listener<>() {
            @Override
            public void onClose(Status status, io.grpc.Metadata trailers) {
                end.complete(status);
            }
        }, new io.grpc.Metadata());
        call.request(100);
        long until = System.nanoTime() + 4 * LIMIT.toNanos();
        while (System.nanoTime() < until) {
            call.sendMessage(new byte[] {1});
            Thread.sleep(LIMIT.toMillis() / 3); // the pace of the client under test, not a wait for the server
            assertTrue(!end.isDone(), "closed while talking: " + (end.isDone() ? end.get() : ""));
        }
        call.halfClose();
        assertEquals(Status.Code.OK, end.get(10, TimeUnit.SECONDS).getCode());
    }

    @Test
    void aServerStreamWhoseClientIsSilentByDesignIsNotCut() throws Exception {
        health.setStatus("", ServingStatus.NOT_SERVING);
        Iterator<HealthCheckResponse> watch = HealthGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS)
                .watch(HealthCheckRequest.getDefaultInstance());
        assertEquals(ServingStatus.NOT_SERVING, watch.next().getStatus());
        Thread.sleep(4 * LIMIT.toMillis()); // silence well past the limit is what is under test
        health.setStatus("", ServingStatus.SERVING);
        assertEquals(ServingStatus.SERVING, watch.next().getStatus(), "the watch is still open");
    }

    @Test
    void anEndedStreamLeavesNoCheckBehindToHoldIt() throws Exception {
        try (EdgeGuard patient = new EdgeGuard(LIMIT, m -> Duration.ofHours(1),
                new RefusalLog(Duration.ofSeconds(10), System::nanoTime, l -> { }))) {
            ServerServiceDefinition echo = ServerServiceDefinition.builder("test.Slow").addMethod(ECHO,
                    ServerCalls.asyncBidiStreamingCall(out -> new StreamObserver<byte[]>() {
                        @Override
                        public void onNext(byte[] value) {}

                        @Override
                        public void onError(Throwable t) {}

                        @Override
                        public void onCompleted() {
                            out.onCompleted();
                        }
                    })).addMethod(WAIT, ServerCalls.asyncUnaryCall((req, out) -> out.onCompleted())).build();
            String name = InProcessServerBuilder.generateName();
            Server s = InProcessServerBuilder.forName(name).addService(patient.guard(echo, m -> 1 << 20)).build().start();
            ManagedChannel c = InProcessChannelBuilder.forName(name).build();
            try {
                for (int i = 0; i < 3; i++) {
                    CompletableFuture<Status> end = new CompletableFuture<>();
                    ClientCall<byte[], byte[]> call = c.newCall(ECHO, CallOptions.DEFAULT);
                    call.start(new ClientCall.Listener<>() {
                        @Override
                        public void onClose(Status status, io.grpc.Metadata trailers) {
                            end.complete(status);
                        }
                    }, new io.grpc.Metadata());
                    call.sendMessage(new byte[] {1});
                    call.halfClose();
                    assertEquals(Status.Code.OK, end.get(10, TimeUnit.SECONDS).getCode());
                }
                // Before the fix each ended stream's hour-long check stayed queued, holding the call and its handler.
                assertEquals(0, patient.pendingChecks(), "checks left for ended streams");
            } finally {
                c.shutdownNow();
                s.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
            }
        }
    }
}
