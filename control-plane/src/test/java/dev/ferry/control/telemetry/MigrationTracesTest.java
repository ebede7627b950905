package dev.ferry.control.telemetry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.backends.Backends;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.migration.FaultHold;
import dev.ferry.control.migration.FaultInjection;
import dev.ferry.control.migration.MigrationServices;
import dev.ferry.control.migration.ProtocolVersion;
import dev.ferry.security.CertificateAuthority;
import dev.ferry.security.TlsFiles;
import dev.ferry.security.TransportSecurity;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WatchMigrationRequest;
import dev.ferry.v1.WorkloadSpec;
import dev.ferry.vm.Backend;
import io.grpc.ClientInterceptors;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.function.Predicate;
import java.util.stream.Collectors;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two agents in this JVM, each with its own {@link AgentTelemetry} exporting over OTLP/gRPC to a real (test)
 * collector, migrate a process-backend guest: the spans of both agents form one trace, under the caller's context,
 * and the Prometheus endpoint shows the migration's metrics while it runs and after.
 */
class MigrationTracesTest {
    @TempDir
    static Path certs;

    @BeforeAll
    static void certificates() throws Exception {
        CertificateAuthority.init(certs, List.of(), List.of());
    }

    /** The controller's own span: CreateMigration sends it, so the migration's trace continues the caller's. */
    private static final String CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
    private static final String CALLER_SPAN = "00f067aa0ba902b7";
    private static final Duration WAIT = Duration.ofSeconds(60);

    private static Agent agent(String name, AgentTelemetry telemetry, FaultHold hold) throws Exception {
        InetSocketAddress any = new InetSocketAddress("127.0.0.1", 0);
        return Agent.start(name, TransportSecurity.mutualTls(TlsFiles.in(certs, "agent")), any, any, line -> { },
                Backends.open(Backends.Choice.PROCESS), a -> new MigrationServices(a, telemetry.openTelemetry(),
                        FaultInjection.NONE, ProtocolVersion.CURRENT, hold, Duration.ofSeconds(60)));
    }

    private static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort(); // the exporter cannot tell the port it bound; a just-freed one is near enough
        }
    }

    private static String scrape(int port) throws Exception {
        HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                URI.create("http://127.0.0.1:" + port + "/metrics")).timeout(Duration.ofSeconds(10)).build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        return r.body();
    }

    /** The value of the first sample of {@code name} that has {@code label} (e.g. role="source"; "" for any). */
    private static double sample(String exposition, String name, String label) {
        return exposition.lines().filter(l -> l.startsWith(name + "{") && l.contains(label)).findFirst()
                .map(l -> Double.parseDouble(l.substring(l.lastIndexOf(' ') + 1)))
                .orElseThrow(() -> new AssertionError("no sample " + name + " " + label + " in\n" + exposition));
    }

    private static void awaitFile(Path p) throws InterruptedException {
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (!Files.exists(p)) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("never appeared: " + p);
            }
            Thread.sleep(20); // the agent signals the hold by this file only
        }
    }

    private static ManagedChannel controller(Agent at) throws Exception {
        return TransportSecurity.mutualTls(TlsFiles.in(certs, "controller")).channelBuilder(at.controlAddress()).build();
    }

    @Test
    void aPrecopyMigrationIsOneTraceAcrossBothAgentsAndItsMetricsMoveWhileItRuns(@TempDir Path holds) throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        Files.createFile(holds.resolve(FaultHold.Point.STOP_AND_COPY.cliName() + ".hold"));
        int metricsPort = freePort();
        try (OtlpTestCollector collector = new OtlpTestCollector();
                AgentTelemetry srcTelemetry = AgentTelemetry.start("trace-src", collector.endpoint(),
                        new InetSocketAddress("127.0.0.1", metricsPort));
                AgentTelemetry dstTelemetry = AgentTelemetry.start("trace-dst", collector.endpoint(), null);
                Agent src = agent("trace-src", srcTelemetry, FaultHold.in(holds));
                Agent dst = agent("trace-dst", dstTelemetry, FaultHold.NONE)) {
            ManagedChannel ch = controller(src);
            try {
                VmServiceGrpc.newBlockingStub(ch).createVm(CreateVmRequest.newBuilder().setVmId("traced").setVm(Vm
                        .newBuilder().setVcpuCount(1).setMemoryBytes(64 << 20).setWorkload(WorkloadSpec.newBuilder()
                                .setWorkingSetBytes(16 << 20).setDirtyRateBytesPerSecond(4 << 20))).build());
                Metadata caller = new Metadata();
                caller.put(Metadata.Key.of("traceparent", Metadata.ASCII_STRING_MARSHALLER),
                        "00-" + CALLER_TRACE + "-" + CALLER_SPAN + "-01");
                var migrations = MigrationServiceGrpc.newBlockingStub(ClientInterceptors.intercept(ch,
                        MetadataUtils.newAttachHeadersInterceptor(caller)));
                migrations.createMigration(CreateMigrationRequest.newBuilder().setMigrationId("traced")
                        .setMigration(Migration.newBuilder().setVm("vms/traced").setMode(MigrationMode.PRECOPY)
                                .setDestinationAddress(dst.controlAddress())).build());

                // Held in STOP_AND_COPY: the precopy rounds are over, the migration is not.
                awaitFile(holds.resolve(FaultHold.Point.STOP_AND_COPY.cliName() + ".reached"));
                String during = scrape(metricsPort);
                assertTrue(sample(during, "ferry_migration_sent_bytes_total", "mode=\"PRECOPY\"") > 0, during);
                assertTrue(sample(during, "ferry_migration_rounds_total", "mode=\"PRECOPY\"") >= 1, during);
                assertEquals(1, sample(during, "ferry_migrations_active", "role=\"source\""), during);
                assertTrue(during.contains("ferry_migration_dirty_rate_bytes_per_second"), during);
                assertFalse(during.contains("ferry_migrations_ended_total{"), "nothing ended yet:\n" + during);
                Files.createFile(holds.resolve(FaultHold.Point.STOP_AND_COPY.cliName() + ".release"));

                Migration end = null;
                var watch = MigrationServiceGrpc.newBlockingStub(ch).withDeadlineAfter(WAIT.toSeconds(),
                        java.util.concurrent.TimeUnit.SECONDS).watchMigration(WatchMigrationRequest.newBuilder()
                        .setName("migrations/traced").build());
                while (watch.hasNext()) {
                    end = watch.next();
                }
                assertEquals(Migration.Phase.COMPLETED, end.getPhase(), end.toString());

                String after = scrape(metricsPort);
                for (String name : List.of("ferry_migration_sent_bytes_total", "ferry_migration_rounds_total",
                        "ferry_migration_dirty_rate_bytes_per_second", "ferry_migrations_ended_total",
                        "ferry_migration_downtime_milliseconds_bucket", "ferry_migration_duration_milliseconds_bucket",
                        "ferry_migration_transferred_bytes_total", "ferry_migrations_active")) {
                    assertTrue(after.contains(name), name + " missing from\n" + after);
                }
                assertEquals(0, sample(after, "ferry_migrations_active", "role=\"source\""), after);
            } finally {
                ch.shutdownNow();
            }

            // Spans end as their work ends; the root and the destination's last call end around COMPLETED.
            List<OtlpTestCollector.ReceivedSpan> spans = awaitSpans(collector, srcTelemetry, dstTelemetry, all ->
                    has(all, "trace-src", "ferry.migration") && has(all, "trace-dst", "/CommitIncomingMigration"));
            Set<String> traces = spans.stream().map(OtlpTestCollector.ReceivedSpan::traceId).collect(Collectors.toSet());
            assertEquals(Set.of(CALLER_TRACE), traces, "one trace, the caller's: " + spans);

            OtlpTestCollector.ReceivedSpan root = only(spans, "trace-src", "ferry.migration");
            // Under the source's CreateMigration call, itself under the caller's span.
            OtlpTestCollector.ReceivedSpan create = only(spans, "trace-src", "/CreateMigration");
            assertEquals(CALLER_SPAN, create.parentSpanId());
            assertEquals(create.spanId(), root.parentSpanId());
            assertEquals("migrations/traced", root.attributes().get("ferry.migration"));
            assertEquals("COMPLETED", root.attributes().get("ferry.phase"));
            assertEquals(AgentTelemetry.SERVICE_NAME, root.service());
            OtlpTestCollector.ReceivedSpan negotiation = only(spans, "trace-src", "ferry.negotiation");
            OtlpTestCollector.ReceivedSpan stopAndCopy = only(spans, "trace-src", "ferry.stop_and_copy");
            OtlpTestCollector.ReceivedSpan verification = only(spans, "trace-src", "ferry.verification");
            assertEquals("true", only(spans, "trace-src", "ferry.device_state").attributes()
                    .get("ferry.device_state_at_switchover"), "the state rides in CompleteIncomingMigration");
            List<OtlpTestCollector.ReceivedSpan> rounds = spans.stream()
                    .filter(s -> s.name().equals("ferry.precopy.round")).toList();
            assertFalse(rounds.isEmpty(), spans.toString());
            for (var s : List.of(negotiation, stopAndCopy, verification, rounds.get(0))) {
                assertEquals(root.spanId(), s.parentSpanId(), s.name() + " is a child of the migration");
                assertFalse(s.error(), s.toString());
            }
            assertTrue(rounds.get(0).attributes().containsKey("ferry.pages_sent"), rounds.toString());
            assertTrue(stopAndCopy.events().contains("downtime"), stopAndCopy.toString());
            assertTrue(Long.parseLong(stopAndCopy.attributes().get("ferry.downtime_us")) > 0, stopAndCopy.toString());

            // The destination's spans hang under the source's, by the context its calls carried.
            assertEquals(negotiation.spanId(), only(spans, "trace-dst", "/NegotiateMigration").parentSpanId());
            assertEquals(stopAndCopy.spanId(), only(spans, "trace-dst", "/CompleteIncomingMigration").parentSpanId());
            assertEquals(verification.spanId(), only(spans, "trace-dst", "/VerifyIncomingMigration").parentSpanId());
            assertTrue(spans.stream().noneMatch(s -> s.name().endsWith("/TransferDeviceState")), spans.toString());
            List<OtlpTestCollector.ReceivedSpan> pageStreams = spans.stream()
                    .filter(s -> s.instance().equals("trace-dst") && s.name().endsWith("/StreamPages")).toList();
            assertFalse(pageStreams.isEmpty(), "the page streams carry the trace too: " + spans);
            pageStreams.forEach(s -> assertEquals(root.spanId(), s.parentSpanId(), s.toString()));
        }
    }

    /** Postcopy: the destination's fault latencies reach its metrics, and its pager calls join the trace. */
    @Test
    void postcopyFaultLatenciesShowOnTheDestinationAndItsFaultStreamIsTraced() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        Backends backends = Backends.open(Backends.Choice.PROCESS);
        assumeTrue(MigrationServices.modes(backends.require(Backend.PROCESS)).contains(MigrationMode.POSTCOPY),
                "userfaultfd is not available here");
        int metricsPort = freePort();
        try (OtlpTestCollector collector = new OtlpTestCollector();
                AgentTelemetry srcTelemetry = AgentTelemetry.start("pc-src", collector.endpoint(), null);
                AgentTelemetry dstTelemetry = AgentTelemetry.start("pc-dst", collector.endpoint(),
                        new InetSocketAddress("127.0.0.1", metricsPort));
                Agent src = agent("pc-src", srcTelemetry, FaultHold.NONE);
                Agent dst = agent("pc-dst", dstTelemetry, FaultHold.NONE)) {
            ManagedChannel ch = controller(src);
            try {
                VmServiceGrpc.newBlockingStub(ch).createVm(CreateVmRequest.newBuilder().setVmId("pc").setVm(Vm
                        .newBuilder().setVcpuCount(1).setMemoryBytes(64 << 20).setWorkload(WorkloadSpec.newBuilder()
                                .setWorkingSetBytes(16 << 20).setDirtyRateBytesPerSecond(4 << 20))).build());
                MigrationServiceGrpc.newBlockingStub(ch).createMigration(CreateMigrationRequest.newBuilder()
                        .setMigrationId("pc").setMigration(Migration.newBuilder().setVm("vms/pc")
                                .setMode(MigrationMode.POSTCOPY).setDestinationAddress(dst.controlAddress())).build());
                Migration end = null;
                var watch = MigrationServiceGrpc.newBlockingStub(ch).withDeadlineAfter(WAIT.toSeconds(),
                        java.util.concurrent.TimeUnit.SECONDS).watchMigration(WatchMigrationRequest.newBuilder()
                        .setName("migrations/pc").build());
                while (watch.hasNext()) {
                    end = watch.next();
                }
                assertEquals(Migration.Phase.COMPLETED, end.getPhase(), end.toString());
                assertTrue(end.getStatistics().getPostcopy().getPageFaults() > 0, end.toString());
            } finally {
                ch.shutdownNow();
            }
            String metrics = scrape(metricsPort);
            assertTrue(sample(metrics, "ferry_postcopy_fault_latency_milliseconds_count", "") > 0, metrics);

            List<OtlpTestCollector.ReceivedSpan> spans = awaitSpans(collector, srcTelemetry, dstTelemetry, all ->
                    has(all, "pc-src", "ferry.migration") && has(all, "pc-src", "/StreamPageFaults"));
            OtlpTestCollector.ReceivedSpan root = only(spans, "pc-src", "ferry.migration");
            assertEquals(Set.of(root.traceId()), spans.stream().map(OtlpTestCollector.ReceivedSpan::traceId)
                    .collect(Collectors.toSet()), spans.toString());
            // The destination opened its fault stream within one of its own calls: the source's pager span is under it.
            String faultStreamParent = only(spans, "pc-src", "/StreamPageFaults").parentSpanId();
            assertTrue(spans.stream().anyMatch(s -> s.spanId().equals(faultStreamParent) && s.instance().equals("pc-dst")),
                    spans.toString());
            only(spans, "pc-src", "ferry.postcopy.switchover");
            only(spans, "pc-src", "ferry.postcopy");
            only(spans, "pc-src", "ferry.verification");
        }
    }

    private static boolean has(List<OtlpTestCollector.ReceivedSpan> spans, String instance, String name) {
        return spans.stream().anyMatch(s -> instance.equals(s.instance()) && s.name().endsWith(name));
    }

    private static OtlpTestCollector.ReceivedSpan only(List<OtlpTestCollector.ReceivedSpan> spans, String instance,
            String name) {
        List<OtlpTestCollector.ReceivedSpan> found = spans.stream()
                .filter(s -> instance.equals(s.instance()) && s.name().endsWith(name)).toList();
        assertEquals(1, found.size(), instance + " " + name + " in " + spans);
        return found.get(0);
    }

    /** Flushes both agents' exporters until the collector holds what {@code done} needs, or fails after WAIT. */
    private static List<OtlpTestCollector.ReceivedSpan> awaitSpans(OtlpTestCollector collector, AgentTelemetry a,
            AgentTelemetry b, Predicate<List<OtlpTestCollector.ReceivedSpan>> done) {
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (true) {
            a.flush(); // returns once the export answered: what ended before is in the collector
            b.flush();
            List<OtlpTestCollector.ReceivedSpan> spans = collector.spans();
            if (done.test(spans)) {
                return spans;
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("spans still missing: " + spans);
            }
        }
    }
}
