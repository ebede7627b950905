package dev.ferry.control.telemetry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.control.migration.MigrationTracing;
import io.opentelemetry.exporter.logging.LoggingSpanExporter;
import java.net.URI;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.Test;

class AgentTelemetryTest {
    @Test
    void withoutAnEndpointEachSpanIsOneLogLineAtInfo() {
        List<LogRecord> records = new CopyOnWriteArrayList<>();
        Handler capture = new Handler() {
            @Override
            public void publish(LogRecord r) {
                records.add(r);
            }

            @Override
            public void flush() {}

            @Override
            public void close() {}
        };
        Logger log = Logger.getLogger(LoggingSpanExporter.class.getName());
        try (AgentTelemetry telemetry = AgentTelemetry.start("log-agent", null, null)) {
            log.addHandler(capture);
            MigrationTracing tracing = new OtelMigrationTracing(telemetry.openTelemetry());
            MigrationTracing.Span root = tracing.startMigration("migrations/logged");
            MigrationTracing.Span round = root.child("ferry.precopy.round").set("ferry.round", 1);
            round.event("downtime", Map.of("pause_us", 12L));
            round.failed("boom");
            round.end();
            root.end();
            telemetry.flush();
        } finally {
            log.removeHandler(capture);
        }
        assertEquals(2, records.size(), records.toString());
        for (LogRecord r : records) {
            assertEquals(Level.INFO, r.getLevel());
            assertEquals(null, r.getThrown());
            String line = new java.util.logging.SimpleFormatter().formatMessage(r);
            assertFalse(line.contains("\n"), line);
        }
        String first = new java.util.logging.SimpleFormatter().formatMessage(records.get(0));
        assertTrue(first.contains("ferry.precopy.round") && first.contains("ferry.round=1"), first);
    }

    /** What the agent prints for OpenTelemetry's records: one line each, no stack trace. */
    @Test
    void anUnreachableCollectorIsOneLinePerFailedExportWithoutAStackTrace() throws Exception {
        java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
        try (java.net.ServerSocket closed = new java.net.ServerSocket(0)) {
            int port = closed.getLocalPort();
            closed.close(); // nothing listens there now: the export's connection is refused
            try (AgentTelemetry telemetry = AgentTelemetry.start("unreachable", URI.create("http://127.0.0.1:" + port),
                    null)) {
                AgentTelemetry.logTo(err); // after start, which installs the handler on stderr once per JVM
                new OtelMigrationTracing(telemetry.openTelemetry()).startMigration("migrations/lost").end();
                telemetry.flush();
            }
        } finally {
            AgentTelemetry.logTo(System.err);
        }
        String out = err.toString(java.nio.charset.StandardCharsets.UTF_8);
        List<String> lines = out.lines().filter(l -> l.contains("GrpcExporter")).toList();
        assertEquals(1, lines.size(), out);
        assertTrue(lines.get(0).contains("SEVERE GrpcExporter: Failed to export spans"), out);
        assertFalse(out.contains("\tat "), "no stack trace: " + out);
    }

    @Test
    void anOtlpEndpointIsAnHttpOrHttpsUrl() {
        assertEquals(URI.create("http://collector:4317"), AgentTelemetry.otlpEndpoint("http://collector:4317"));
        assertEquals(URI.create("https://collector:4317"), AgentTelemetry.otlpEndpoint("https://collector:4317"));
        for (String bad : List.of("collector:4317", "ftp://collector", "http://", "not a url")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> AgentTelemetry.otlpEndpoint(bad));
            assertTrue(e.getMessage().startsWith("--otlp-endpoint '" + bad + "'"), e.getMessage());
        }
    }
}
