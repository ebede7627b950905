package dev.ferry.control.telemetry;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.UnknownFieldSet;
import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.ServerCalls;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * An OTLP/gRPC trace collector for tests: a real grpc-java server answering
 * {@code opentelemetry.proto.collector.trace.v1.TraceService/Export} on loopback, decoding the spans by field number
 * (opentelemetry-proto's message classes are generated for a newer protobuf than the project's). It keeps every
 * span it was sent. Plaintext, on 127.0.0.1 only: the agents under test dial it with --otlp-endpoint http://...
 */
final class OtlpTestCollector implements AutoCloseable {
    /** One exported span: ids in hex, the sending agent's service.instance.id, its attributes as strings. */
    record ReceivedSpan(String traceId, String spanId, String parentSpanId, String name, String service,
            String instance, Map<String, String> attributes, List<String> events, boolean error) {}

    private static final MethodDescriptor.Marshaller<byte[]> BYTES = dev.ferry.control.RawBytes.MARSHALLER;
    private static final String SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService";
    private static final MethodDescriptor<byte[], byte[]> EXPORT = MethodDescriptor.<byte[], byte[]>newBuilder()
            .setType(MethodDescriptor.MethodType.UNARY).setFullMethodName(SERVICE + "/Export")
            .setRequestMarshaller(BYTES).setResponseMarshaller(BYTES).build();

    private final List<ReceivedSpan> spans = new ArrayList<>(); // guarded by this
    private final Server server;

    OtlpTestCollector() throws IOException {
        ServerServiceDefinition service = ServerServiceDefinition.builder(SERVICE)
                .addMethod(EXPORT, ServerCalls.asyncUnaryCall((request, reply) -> {
                    try {
                        received(decode(request));
                    } catch (InvalidProtocolBufferException e) {
                        reply.onError(Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException());
                        return;
                    }
                    reply.onNext(new byte[0]); // ExportTraceServiceResponse with nothing rejected
                    reply.onCompleted();
                })).build();
        server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0)).addService(service).build().start();
    }

    URI endpoint() {
        return URI.create("http://127.0.0.1:" + server.getPort());
    }

    private synchronized void received(List<ReceivedSpan> batch) {
        spans.addAll(batch);
        notifyAll();
    }

    synchronized List<ReceivedSpan> spans() {
        return List.copyOf(spans);
    }

    // ExportTraceServiceRequest: 1 resource_spans. ResourceSpans: 1 resource (Resource: 1 attributes), 2 scope_spans.
    // ScopeSpans: 2 spans. Span: 1 trace_id, 2 span_id, 4 parent_span_id, 5 name, 9 attributes, 11 events (Event: 2
    // name), 15 status (Status: 3 code, 2 = ERROR). KeyValue: 1 key, 2 value (AnyValue: 1 string, 2 bool, 3 int).
    static List<ReceivedSpan> decode(byte[] request) throws InvalidProtocolBufferException {
        List<ReceivedSpan> out = new ArrayList<>();
        for (ByteString rs : fields(UnknownFieldSet.parseFrom(request), 1)) {
            UnknownFieldSet resourceSpans = UnknownFieldSet.parseFrom(rs);
            Map<String, String> resource = new HashMap<>();
            for (ByteString r : fields(resourceSpans, 1)) {
                resource.putAll(attributes(fields(UnknownFieldSet.parseFrom(r), 1)));
            }
            for (ByteString ss : fields(resourceSpans, 2)) {
                for (ByteString sp : fields(UnknownFieldSet.parseFrom(ss), 2)) {
                    UnknownFieldSet span = UnknownFieldSet.parseFrom(sp);
                    List<String> events = new ArrayList<>();
                    for (ByteString e : fields(span, 11)) {
                        events.add(string(UnknownFieldSet.parseFrom(e), 2));
                    }
                    boolean error = false;
                    for (ByteString st : fields(span, 15)) {
                        var code = UnknownFieldSet.parseFrom(st).getField(3).getVarintList();
                        error |= !code.isEmpty() && code.get(0) == 2;
                    }
                    out.add(new ReceivedSpan(hex(span, 1), hex(span, 2), hex(span, 4), string(span, 5),
                            resource.get("service.name"), resource.get("service.instance.id"),
                            attributes(fields(span, 9)), events, error));
                }
            }
        }
        return out;
    }

    private static List<ByteString> fields(UnknownFieldSet message, int number) {
        return message.hasField(number) ? message.getField(number).getLengthDelimitedList() : List.of();
    }

    private static String string(UnknownFieldSet message, int number) {
        List<ByteString> f = fields(message, number);
        return f.isEmpty() ? "" : f.get(0).toStringUtf8();
    }

    private static String hex(UnknownFieldSet message, int number) {
        List<ByteString> f = fields(message, number);
        return f.isEmpty() ? "" : HexFormat.of().formatHex(f.get(0).toByteArray());
    }

    private static Map<String, String> attributes(List<ByteString> keyValues) throws InvalidProtocolBufferException {
        Map<String, String> out = new HashMap<>();
        for (ByteString kv : keyValues) {
            UnknownFieldSet pair = UnknownFieldSet.parseFrom(kv);
            List<ByteString> value = fields(pair, 2);
            if (value.isEmpty()) {
                continue;
            }
            UnknownFieldSet any = UnknownFieldSet.parseFrom(value.get(0));
            String v = any.hasField(1) ? string(any, 1)
                    : any.hasField(3) ? String.valueOf(any.getField(3).getVarintList().get(0))
                    : any.hasField(2) ? String.valueOf(any.getField(2).getVarintList().get(0) != 0) : "?";
            out.put(string(pair, 1), v);
        }
        return out;
    }

    @Override
    public void close() throws InterruptedException {
        server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
}
