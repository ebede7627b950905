package dev.ferry.dataplane;

import dev.ferry.v1.FerryMetadata;
import dev.ferry.v1.PageAck;
import dev.ferry.v1.PageTransferServiceGrpc;
import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.grpc.ServerBuilder;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServiceDescriptor;
import io.grpc.Status;
import io.grpc.protobuf.ProtoUtils;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.ServerCalls;
import java.io.IOException;
import java.util.Objects;
import java.util.Optional;

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
        return ServerInterceptors.intercept(definition, new SessionCheck(sessions));
    }

    /** Resolves the session token before the handler runs; rejects the call when there is none. */
    private static final class SessionCheck implements ServerInterceptor {
        private final SessionLookup sessions;

        SessionCheck(SessionLookup sessions) {
            this.sessions = sessions;
        }

        @Override
        public <ReqT, RespT> ServerCall.Listener<ReqT> interceptCall(ServerCall<ReqT, RespT> call, Metadata headers,
                ServerCallHandler<ReqT, RespT> next) {
            String token = headers.get(FerryMetadata.SESSION_TOKEN);
            if (token == null || token.isEmpty()) {
                return reject(call, Status.UNAUTHENTICATED.withDescription(
                        "missing " + FerryMetadata.SESSION_TOKEN_HEADER + " metadata"));
            }
            Optional<IncomingPages> session;
            try {
                session = sessions.byToken(token);
            } catch (RuntimeException e) {
                return reject(call, Status.INTERNAL.withDescription("session lookup failed").withCause(e));
            }
            if (session == null || session.isEmpty()) {
                return reject(call, Status.UNAUTHENTICATED.withDescription(
                        "unknown " + FerryMetadata.SESSION_TOKEN_HEADER + ": no incoming migration has this token"));
            }
            Context context = Context.current().withValue(SESSION, session.get());
            return Contexts.interceptCall(context, call, headers, next);
        }

        /** Closes the call without requesting any message, so nothing is parsed, let alone written. */
        private static <ReqT, RespT> ServerCall.Listener<ReqT> reject(ServerCall<ReqT, RespT> call, Status status) {
            call.close(status, new Metadata());
            return new ServerCall.Listener<>() { };
        }
    }
}
