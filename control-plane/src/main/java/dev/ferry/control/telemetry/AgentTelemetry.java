package dev.ferry.control.telemetry;

import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.exporter.logging.LoggingSpanExporter;
import io.opentelemetry.exporter.otlp.trace.OtlpGrpcSpanExporter;
import io.opentelemetry.exporter.prometheus.PrometheusHttpServer;
import io.opentelemetry.sdk.OpenTelemetrySdk;
import io.opentelemetry.sdk.metrics.SdkMeterProvider;
import io.opentelemetry.sdk.resources.Resource;
import io.opentelemetry.sdk.trace.SdkTracerProvider;
import io.opentelemetry.sdk.trace.export.BatchSpanProcessor;
import io.opentelemetry.sdk.trace.export.SpanExporter;
import java.net.InetSocketAddress;
import java.net.URI;
import java.util.concurrent.TimeUnit;
import java.util.logging.ConsoleHandler;
import java.util.logging.Formatter;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

/**
 * The agent's OpenTelemetry, set up in one place: traces always (to java.util.logging at INFO, one line per span,
 * or over OTLP/gRPC to a collector), metrics when asked (Prometheus). Spans are exported in batches, off the
 * migration threads. Service name "ferry-agent"; the agent's name is the resource's service.instance.id.
 */
public final class AgentTelemetry implements AutoCloseable {
    public static final String SERVICE_NAME = "ferry-agent";

    private final OpenTelemetrySdk sdk;

    private AgentTelemetry(OpenTelemetrySdk sdk) {
        this.sdk = sdk;
    }

    /**
     * Telemetry of agent {@code agentName}: spans to {@code otlpEndpoint} (http://HOST:PORT or https://; null: to
     * the log), metrics served at http://{@code metricsAt}/metrics (null: none).
     */
    public static AgentTelemetry start(String agentName, URI otlpEndpoint, InetSocketAddress metricsAt) {
        Resource resource = Resource.getDefault().merge(Resource.create(Attributes.builder()
                .put("service.name", SERVICE_NAME).put("service.instance.id", agentName).build()));
        SpanExporter exporter;
        if (otlpEndpoint == null) {
            oneLinePerSpan();
            exporter = LoggingSpanExporter.create();
        } else {
            exporter = OtlpGrpcSpanExporter.builder().setEndpoint(otlpEndpoint.toString()).build();
        }
        SdkTracerProvider traces = SdkTracerProvider.builder().setResource(resource)
                .addSpanProcessor(BatchSpanProcessor.builder(exporter).build()).build();
        var sdk = OpenTelemetrySdk.builder().setTracerProvider(traces);
        if (metricsAt != null) {
            sdk.setMeterProvider(SdkMeterProvider.builder().setResource(resource)
                    .registerMetricReader(PrometheusHttpServer.builder().setHost(metricsAt.getHostString())
                            .setPort(metricsAt.getPort()).build()).build());
        }
        return new AgentTelemetry(sdk.build());
    }

    private static final java.util.concurrent.atomic.AtomicBoolean LOG_FORMATTED = new java.util.concurrent.atomic.AtomicBoolean();

    /** The logging exporter's lines to stderr as they are (JUL's default format takes two lines per record). */
    private static void oneLinePerSpan() {
        if (!LOG_FORMATTED.compareAndSet(false, true)) {
            return; // one handler per JVM, however many agents (tests run several)
        }
        Logger log = Logger.getLogger(LoggingSpanExporter.class.getName());
        ConsoleHandler h = new ConsoleHandler();
        h.setFormatter(new Formatter() {
            @Override
            public String format(LogRecord r) {
                return r.getInstant() + " span " + formatMessage(r) + System.lineSeparator();
            }
        });
        log.addHandler(h);
        log.setUseParentHandlers(false);
    }

    /** Checks an --otlp-endpoint value: an http or https URL with a host. */
    public static URI otlpEndpoint(String s) {
        URI u;
        try {
            u = new URI(s);
        } catch (java.net.URISyntaxException e) {
            throw new IllegalArgumentException("--otlp-endpoint '" + s + "' is not a URL");
        }
        if (!("http".equals(u.getScheme()) || "https".equals(u.getScheme())) || u.getHost() == null) {
            throw new IllegalArgumentException("--otlp-endpoint '" + s + "' must be http://HOST:PORT or https://HOST:PORT");
        }
        return u;
    }

    public OpenTelemetry openTelemetry() {
        return sdk;
    }

    /** Exports the spans ended so far, waiting up to 10 s. */
    public void flush() {
        sdk.getSdkTracerProvider().forceFlush().join(10, TimeUnit.SECONDS);
    }

    /** Exports what is pending (up to 10 s) and stops the exporters and the metrics endpoint. */
    @Override
    public void close() {
        flush();
        sdk.shutdown().join(10, TimeUnit.SECONDS);
    }
}
