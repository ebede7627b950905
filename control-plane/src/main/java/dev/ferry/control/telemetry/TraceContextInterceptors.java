package dev.ferry.control.telemetry;

import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingServerCall;
import io.grpc.ForwardingServerCallListener;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;
import io.opentelemetry.context.propagation.TextMapGetter;
import io.opentelemetry.context.propagation.TextMapSetter;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * W3C trace context (traceparent, tracestate) in gRPC metadata: the client side sends the span current on the
 * calling thread; the server side runs a call that brought one within a SERVER span, child of the caller's. A call
 * that brought none gets no span: the destination's spans exist only as parts of the source's trace (warm-ups,
 * health probes and controllers without tracing add nothing).
 */
final class TraceContextInterceptors {
    private static final W3CTraceContextPropagator W3C = W3CTraceContextPropagator.getInstance();

    private static final TextMapSetter<Metadata> SET = (headers, key, value) ->
            headers.put(Metadata.Key.of(key, Metadata.ASCII_STRING_MARSHALLER), value);

    private static final TextMapGetter<Metadata> GET = new TextMapGetter<>() {
        @Override
        public Iterable<String> keys(Metadata headers) {
            return headers.keys();
        }

        @Override
        public String get(Metadata headers, String key) {
            return headers == null ? null : headers.get(Metadata.Key.of(key, Metadata.ASCII_STRING_MARSHALLER));
        }
    };

    private final Tracer tracer;

    TraceContextInterceptors(Tracer tracer) {
        this.tracer = tracer;
    }

    ClientInterceptor client() {
        return new ClientInterceptor() {
            @Override
            public <Q, R> ClientCall<Q, R> interceptCall(io.grpc.MethodDescriptor<Q, R> method, io.grpc.CallOptions options,
                    io.grpc.Channel next) {
                return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
                    @Override
                    public void start(Listener<R> listener, Metadata headers) {
                        W3C.inject(Context.current(), headers, SET);
                        super.start(listener, headers);
                    }
                };
            }
        };
    }

    ServerInterceptor server() {
        return new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                    io.grpc.ServerCallHandler<Q, R> next) {
                Context parent = W3C.extract(Context.root(), headers, GET);
                if (!Span.fromContext(parent).getSpanContext().isValid()) {
                    return next.startCall(call, headers);
                }
                String method = call.getMethodDescriptor().getFullMethodName();
                Span span = tracer.spanBuilder(method).setParent(parent).setSpanKind(SpanKind.SERVER)
                        .setAttribute("rpc.system", "grpc").setAttribute("rpc.method", method).startSpan();
                Context context = parent.with(span);
                AtomicBoolean ended = new AtomicBoolean();
                ServerCall<Q, R> ending = new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
                    @Override
                    public void close(Status status, Metadata trailers) {
                        end(span, ended, status);
                        super.close(status, trailers);
                    }
                };
                ServerCall.Listener<Q> listener;
                try (Scope s = context.makeCurrent()) {
                    listener = next.startCall(ending, headers);
                }
                // Each callback runs with the span current: the handler's own spans and calls become its children.
                return new ForwardingServerCallListener.SimpleForwardingServerCallListener<>(listener) {
                    @Override
                    public void onMessage(Q message) {
                        try (Scope s = context.makeCurrent()) {
                            super.onMessage(message);
                        }
                    }

                    @Override
                    public void onHalfClose() {
                        try (Scope s = context.makeCurrent()) {
                            super.onHalfClose();
                        }
                    }

                    @Override
                    public void onCancel() {
                        try (Scope s = context.makeCurrent()) {
                            super.onCancel();
                        } finally {
                            end(span, ended, Status.CANCELLED);
                        }
                    }

                    @Override
                    public void onComplete() {
                        try (Scope s = context.makeCurrent()) {
                            super.onComplete();
                        }
                    }

                    @Override
                    public void onReady() {
                        try (Scope s = context.makeCurrent()) {
                            super.onReady();
                        }
                    }
                };
            }
        };
    }

    private static void end(Span span, AtomicBoolean ended, Status status) {
        if (!ended.compareAndSet(false, true)) {
            return;
        }
        span.setAttribute("rpc.grpc.status_code", status.getCode().value());
        if (!status.isOk()) {
            span.setStatus(StatusCode.ERROR, status.getCode().name());
        }
        span.end();
    }
}
