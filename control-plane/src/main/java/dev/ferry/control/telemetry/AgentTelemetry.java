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
        oneLinePerRecord();
        SpanExporter exporter = otlpEndpoint == null ? LoggingSpanExporter.create()
                : OtlpGrpcSpanExporter.builder().setEndpoint(otlpEndpoint.toString()).build();
        // To the log: lines show within 100 ms of a span's end (and few are lost when the JVM stops, where JUL's
        // own shutdown hook closes the handlers while ours still flushes); to a collector: OTel's default 5 s batches.
        var batches = BatchSpanProcessor.builder(exporter);
        if (otlpEndpoint == null) {
            batches.setScheduleDelay(java.time.Duration.ofMillis(100));
        }
        SdkTracerProvider traces = SdkTracerProvider.builder().setResource(resource)
                .addSpanProcessor(batches.build()).build();
        var sdk = OpenTelemetrySdk.builder().setTracerProvider(traces);
        if (metricsAt != null) {
            sdk.setMeterProvider(SdkMeterProvider.builder().setResource(resource)
                    .registerMetricReader(PrometheusHttpServer.builder().setHost(metricsAt.getHostString())
                            .setPort(metricsAt.getPort()).build()).build());
        }
        return new AgentTelemetry(sdk.build());
    }

    private static final java.util.concurrent.atomic.AtomicBoolean LOG_FORMATTED = new java.util.concurrent.atomic.AtomicBoolean();

    /**
     * OpenTelemetry's own log records (a span from the logging exporter, a failed OTLP export) to stderr, one line
     * each and without the exception's stack trace: JUL's default takes two lines per record and the OTLP exporter
     * attaches the connect failure's whole trace to every failed export.
     */
    private static void oneLinePerRecord() {
        if (LOG_FORMATTED.compareAndSet(false, true)) { // once per JVM, however many agents (tests run several)
            logTo(System.err);
        }
    }

    /** Sends OpenTelemetry's log records to {@code out} (replacing where they went), one line each. */
    static synchronized void logTo(java.io.OutputStream out) {
        Logger log = Logger.getLogger("io.opentelemetry");
        for (java.util.logging.Handler old : log.getHandlers()) {
            log.removeHandler(old);
        }
        java.util.logging.StreamHandler h = new java.util.logging.StreamHandler(out, new Formatter() {
            @Override
            public String format(LogRecord r) {
                String logger = r.getLoggerName();
                return r.getInstant() + " " + r.getLevel() + " " + logger.substring(logger.lastIndexOf('.') + 1)
                        + ": " + formatMessage(r) + System.lineSeparator();
            }
        }) {
            @Override
            public synchronized void publish(LogRecord r) {
                super.publish(r);
                flush(); // as ConsoleHandler: a line shows when it is logged
            }
        };
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
