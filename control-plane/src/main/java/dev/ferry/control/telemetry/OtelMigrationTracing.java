package dev.ferry.control.telemetry;

import dev.ferry.control.migration.MigrationTracing;
import io.grpc.ClientInterceptor;
import io.grpc.ServerInterceptor;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.common.AttributesBuilder;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import java.util.Map;

/** {@link MigrationTracing} with OpenTelemetry: spans from {@code telemetry}'s tracer "dev.ferry.migration". */
public final class OtelMigrationTracing implements MigrationTracing {
    static final String INSTRUMENTATION = "dev.ferry.migration";

    private final Tracer tracer;
    private final TraceContextInterceptors interceptors;

    public OtelMigrationTracing(OpenTelemetry telemetry) {
        this.tracer = telemetry.getTracer(INSTRUMENTATION);
        this.interceptors = new TraceContextInterceptors(tracer);
    }

    @Override
    public MigrationTracing.Span startMigration(String name) {
        // Context.current(): what TraceContextInterceptors extracted from the CreateMigration call, if anything.
        return new OtelSpan(tracer.spanBuilder("ferry.migration").setParent(Context.current())
                .setAttribute("ferry.migration", name).startSpan());
    }

    @Override
    public ClientInterceptor clientInterceptor() {
        return interceptors.client();
    }

    @Override
    public ServerInterceptor serverInterceptor() {
        return interceptors.server();
    }

    private final class OtelSpan implements MigrationTracing.Span {
        private final io.opentelemetry.api.trace.Span span; // not MigrationTracing.Span, which this class inherits

        OtelSpan(io.opentelemetry.api.trace.Span span) {
            this.span = span;
        }

        @Override
        public MigrationTracing.Span child(String name) {
            return new OtelSpan(tracer.spanBuilder(name).setParent(Context.root().with(span)).startSpan());
        }

        @Override
        public MigrationTracing.Span set(String key, String value) {
            span.setAttribute(key, value);
            return this;
        }

        @Override
        public MigrationTracing.Span set(String key, long value) {
            span.setAttribute(key, value);
            return this;
        }

        @Override
        public void event(String name, Map<String, Long> details) {
            AttributesBuilder a = Attributes.builder();
            details.forEach(a::put);
            span.addEvent(name, a.build());
        }

        @Override
        public void failed(String reason) {
            span.setStatus(StatusCode.ERROR, reason);
        }

        @Override
        public Scope enter() {
            io.opentelemetry.context.Scope s = span.makeCurrent();
            return s::close;
        }

        @Override
        public void end() {
            span.end();
        }
    }
}
