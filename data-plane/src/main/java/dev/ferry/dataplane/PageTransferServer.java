package dev.ferry.dataplane;

import dev.ferry.v1.PageAck;
import dev.ferry.v1.PageTransferServiceGrpc;
import io.grpc.Context;
import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.grpc.ServerBuilder;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServiceDescriptor;
import io.grpc.protobuf.ProtoUtils;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.ServerCalls;
import java.io.IOException;
import java.util.Objects;

/**
 * The destination's ferry.v1.PageTransferService. It is bound with Ferry's own request marshaller
 * ({@link IncomingBatch.Marshaller}: page data goes from the transport's buffers straight into guest memory) under
 * the generated service and method descriptors, so the wire contract, the method name and the schema seen by
 * server reflection and grpcurl are those of page_transfer_service.proto.
 *
 * <p>Every call must carry the {@code ferry-session-token} metadata of a session known to the {@link SessionLookup};
 * otherwise it fails with UNAUTHENTICATED before any message is read.
 */
public final class PageTransferServer {
    /** The session of the current call, put in the call's Context by the token check. */
    static final Context.Key<IncomingPages> SESSION = Context.key("ferry-incoming-pages");

    private PageTransferServer() {
    }

    /** The service, for {@code ServerBuilder.addService}. */
    public static ServerServiceDefinition service(SessionLookup sessions) {
        return service(sessions, new IncomingBatch.ReceiveStats());
    }

    /** Adds the service to {@code builder} (Netty in production, in-process in tests) and starts the server. */
    public static Server start(ServerBuilder<?> builder, SessionLookup sessions) throws IOException {
        return builder.addService(service(sessions)).build().start();
    }

    static ServerServiceDefinition service(SessionLookup sessions, IncomingBatch.ReceiveStats stats) {
        Objects.requireNonNull(sessions, "sessions");
        MethodDescriptor<IncomingBatch, PageAck> method = PageTransferServiceGrpc.getStreamPagesMethod()
                .toBuilder(new IncomingBatch.Marshaller(new ChunkPool(16), stats),
                        ProtoUtils.marshaller(PageAck.getDefaultInstance()))
                .build();
        ServiceDescriptor descriptor = ServiceDescriptor.newBuilder(PageTransferServiceGrpc.SERVICE_NAME)
                .setSchemaDescriptor(PageTransferServiceGrpc.getServiceDescriptor().getSchemaDescriptor())
                .addMethod(method)
                .build();
        ServerCallHandler<IncomingBatch, PageAck> handler = ServerCalls.asyncBidiStreamingCall(responses -> {
            ServerCallStreamObserver<PageAck> observer = (ServerCallStreamObserver<PageAck>) responses;
            observer.disableAutoRequest();
            PageStreamHandler h = new PageStreamHandler(SESSION.get(), observer);
            h.start();
            return h;
        });
        ServerServiceDefinition definition = ServerServiceDefinition.builder(descriptor)
                .addMethod(method, handler)
                .build();
        return ServerInterceptors.intercept(definition,
                new SessionTokenCheck<>(sessions::byToken, SESSION, "no incoming migration has this token"));
    }
}
