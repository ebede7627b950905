package dev.ferry.control.edge;

import io.grpc.Attributes;
import io.grpc.KnownLength;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.SecurityLevel;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServiceDescriptor;
import io.grpc.Status;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.function.ToIntFunction;

/**
 * Takes each request message of a service as raw bytes and lets it through only if it is within the method's size
 * limit (else RESOURCE_EXHAUSTED) and parses (else INVALID_ARGUMENT).
 *
 * <p>Why: grpc-java parses a request inside its own listener, and a parse failure escapes as an exception that
 * the server turns into UNKNOWN "Application error processing RPC" plus a SEVERE log line with a stack trace, per
 * request. And the server has only one inbound size limit, while the control port carries both VmService's tiny
 * requests and MigrationService's device state of a few MiB. So the service is re-bound with an InputStream
 * request marshaller, under the same service and method names and schema (reflection is unchanged), and the
 * original marshaller runs here, where its failure is a status, not an exception.
 */
public final class MessageGate {
    private static final MethodDescriptor.Marshaller<InputStream> RAW = new MethodDescriptor.Marshaller<>() {
        @Override
        public InputStream stream(InputStream value) {
            return value;
        }

        @Override
        public InputStream parse(InputStream stream) {
            return stream;
        }
    };

    private MessageGate() {}

    /** {@code service} with each method's requests limited to {@code maxBytes.applyAsInt(fullMethodName)}. */
    public static ServerServiceDefinition guard(ServerServiceDefinition service, ToIntFunction<String> maxBytes) {
        ServiceDescriptor sd = service.getServiceDescriptor();
        List<ServerMethodDefinition<InputStream, ?>> methods = new ArrayList<>();
        for (ServerMethodDefinition<?, ?> m : service.getMethods()) {
            methods.add(wrap(m, maxBytes.applyAsInt(m.getMethodDescriptor().getFullMethodName())));
        }
        ServiceDescriptor.Builder d = ServiceDescriptor.newBuilder(sd.getName()).setSchemaDescriptor(sd.getSchemaDescriptor());
        methods.forEach(m -> d.addMethod(m.getMethodDescriptor()));
        ServerServiceDefinition.Builder b = ServerServiceDefinition.builder(d.build());
        methods.forEach(b::addMethod);
        return b.build();
    }

    private static <Q, R> ServerMethodDefinition<InputStream, R> wrap(ServerMethodDefinition<Q, R> def, int maxBytes) {
        MethodDescriptor<Q, R> typed = def.getMethodDescriptor();
        MethodDescriptor<InputStream, R> raw = typed.toBuilder(RAW, typed.getResponseMarshaller()).build();
        ServerCallHandler<InputStream, R> handler = (call, headers) -> {
            SerializedCall<InputStream, R> safe = SerializedCall.of(call);
            ServerCall.Listener<Q> inner = def.getServerCallHandler().startCall(new TypedCall<>(safe, typed), headers);
            return new GateListener<>(inner, safe, typed, maxBytes);
        };
        return ServerMethodDefinition.create(raw, handler);
    }

    /** Parses each message for the handler; after a refusal, the handler hears only that it was cancelled. */
    private static final class GateListener<Q, R> extends ServerCall.Listener<InputStream> {
        private final ServerCall.Listener<Q> inner;
        private final SerializedCall<InputStream, R> call;
        private final MethodDescriptor<Q, R> method;
        private final int maxBytes;
        private boolean refused; // listener callbacks are serialized: no lock

        GateListener(ServerCall.Listener<Q> inner, SerializedCall<InputStream, R> call, MethodDescriptor<Q, R> method,
                int maxBytes) {
            this.inner = inner;
            this.call = call;
            this.method = method;
            this.maxBytes = maxBytes;
        }

        @Override
        public void onMessage(InputStream in) {
            if (refused) {
                closeQuietly(in);
                return;
            }
            Q request;
            try (in) {
                InputStream body = bounded(in);
                if (body == null) {
                    refuse(Status.RESOURCE_EXHAUSTED.withDescription(String.format(
                            "request message larger than %d bytes, the limit for %s", maxBytes,
                            method.getFullMethodName())));
                    return;
                }
                request = method.parseRequest(body);
            } catch (RuntimeException | IOException e) { // a parser that fails is bad input, whatever it throws
                Throwable why = e.getCause() != null ? e.getCause() : e;
                refuse(Status.INVALID_ARGUMENT.withDescription("request message is not a valid "
                        + requestType() + ": " + BoundedText.truncate(String.valueOf(why.getMessage()), 200)));
                return;
            }
            inner.onMessage(request);
        }

        /** The message if within the limit (null if not), as a stream the parser can read. */
        private InputStream bounded(InputStream in) throws IOException {
            if (in instanceof KnownLength) {
                return in.available() > maxBytes ? null : in;
            }
            byte[] b = in.readNBytes(maxBytes + 1);
            return b.length > maxBytes ? null : new ByteArrayInputStream(b);
        }

        private String requestType() {
            String full = method.getFullMethodName();
            return full.substring(full.lastIndexOf('/') + 1) + " request";
        }

        private void refuse(Status status) {
            refused = true;
            call.closeFromEdge(status);
        }

        @Override
        public void onHalfClose() {
            if (!refused) {
                inner.onHalfClose();
            }
        }

        @Override
        public void onCancel() {
            inner.onCancel();
        }

        @Override
        public void onComplete() {
            if (refused) {
                inner.onCancel(); // the call ended with our error, not the handler's answer
            } else {
                inner.onComplete();
            }
        }

        @Override
        public void onReady() {
            if (!refused) {
                inner.onReady();
            }
        }

        private static void closeQuietly(InputStream in) {
            try {
                in.close();
            } catch (IOException e) {
                // nothing to release beyond the buffer
            }
        }
    }

    /** The raw call as the handler expects it: its own method descriptor, everything else passed through. */
    private static final class TypedCall<Q, R> extends ServerCall<Q, R> {
        private final ServerCall<InputStream, R> raw;
        private final MethodDescriptor<Q, R> method;

        TypedCall(ServerCall<InputStream, R> raw, MethodDescriptor<Q, R> method) {
            this.raw = raw;
            this.method = method;
        }

        @Override
        public void request(int numMessages) {
            raw.request(numMessages);
        }

        @Override
        public void sendHeaders(Metadata headers) {
            raw.sendHeaders(headers);
        }

        @Override
        public void sendMessage(R message) {
            raw.sendMessage(message);
        }

        @Override
        public void close(Status status, Metadata trailers) {
            raw.close(status, trailers);
        }

        @Override
        public boolean isCancelled() {
            return raw.isCancelled();
        }

        @Override
        public boolean isReady() {
            return raw.isReady();
        }

        @Override
        public void setMessageCompression(boolean enabled) {
            raw.setMessageCompression(enabled);
        }

        @Override
        public void setCompression(String compressor) {
            raw.setCompression(compressor);
        }

        @Override
        public void setOnReadyThreshold(int numBytes) {
            raw.setOnReadyThreshold(numBytes);
        }

        @Override
        public SecurityLevel getSecurityLevel() {
            return raw.getSecurityLevel();
        }

        @Override
        public Attributes getAttributes() {
            return raw.getAttributes();
        }

        @Override
        public String getAuthority() {
            return raw.getAuthority();
        }

        @Override
        public MethodDescriptor<Q, R> getMethodDescriptor() {
            return method;
        }
    }
}
