package dev.ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ferry.backends.BackendTestSupport;
import dev.ferry.backends.Backends;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.migration.MigrationServices;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WorkloadSpec;
import dev.ferry.vm.Backend;
import io.grpc.ManagedChannel;
import dev.ferry.security.CertificateAuthority;
import dev.ferry.security.TlsFiles;
import dev.ferry.security.TlsOptions;
import dev.ferry.security.TransportSecurity;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.sdk.OpenTelemetrySdk;
import io.opentelemetry.sdk.metrics.SdkMeterProvider;
import io.opentelemetry.sdk.metrics.data.MetricData;
import io.opentelemetry.sdk.testing.exporter.InMemoryMetricReader;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** {@code ferry migration}, against two real agents (in this JVM) migrating a real guest; and what it counts. */
class MigrationCliTest {
    @TempDir
    static Path certs;

    @BeforeAll
    static void certificates() throws Exception {
        CertificateAuthority.init(certs, List.of(), List.of());
    }

    /** The CLI as a controller: its --tls-* flags after {@code args}. */
    private static Cli.Result ferry(String... args) {
        List<String> all = new ArrayList<>(List.of(args));
        all.addAll(TlsOptions.flags(TlsFiles.in(certs, "controller")));
        return Cli.run(all.toArray(String[]::new));
    }

    private final InMemoryMetricReader metrics = InMemoryMetricReader.create();
    private final OpenTelemetrySdk telemetry = OpenTelemetrySdk.builder()
            .setMeterProvider(SdkMeterProvider.builder().registerMetricReader(metrics).build()).build();

    private Agent agent(String name, Backend backend) throws Exception {
        InetSocketAddress any = new InetSocketAddress("127.0.0.1", 0);
        return Agent.start(name, TransportSecurity.mutualTls(TlsFiles.in(certs, "agent")), any, any, line -> { }, Backends.open(Backends.Choice.valueOf(backend.name())),
                a -> new MigrationServices(a, telemetry));
    }

    private MetricData metric(String name) {
        return metrics.collectAllMetrics().stream().filter(m -> m.getName().equals(name)).findFirst()
                .orElseThrow(() -> new AssertionError("no metric " + name));
    }

    @ParameterizedTest(name = "on {0}")
    @EnumSource(Backend.class)
    void createWatchGetListAndClearRefusals(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        try (Agent src = agent("cli-src", backend); Agent dst = agent("cli-dst", backend)) {
            ManagedChannel ch = TransportSecurity.mutualTls(TlsFiles.in(certs, "controller"))
                    .channelBuilder(src.controlAddress()).build();
            try {
                VmServiceGrpc.newBlockingStub(ch).createVm(CreateVmRequest.newBuilder().setVmId("cli").setVm(Vm.newBuilder().setVcpuCount(1)
                        .setMemoryBytes(64 << 20).setWorkload(WorkloadSpec.newBuilder().setWorkingSetBytes(16 << 20)
                                .setDirtyRateBytesPerSecond(4 << 20))).build());
            } finally {
                ch.shutdownNow();
            }

            Cli.Result run = ferry("migration", "create", "--agent", src.controlAddress(), "--vm", "cli", "--to",
                    dst.controlAddress(), "--id", "cli", "--mode", "postcopy", "--watch", "--json");
            assertEquals(0, run.exit(), run.out() + run.err());
            JsonNode end = run.lastJson();
            assertEquals("COMPLETED", end.get("phase").asText(), end.toString());
            assertTrue(end.at("/statistics/memoryVerified").asBoolean(), end.toString());
            assertTrue(end.at("/statistics/postcopy/unwrittenPagesVerified").asBoolean(), end.toString());

            var ended = metric("ferry.migrations.ended").getLongSumData().getPoints();
            assertEquals(1, ended.size(), ended.toString());
            var point = ended.iterator().next();
            assertEquals(1, point.getValue());
            assertEquals("COMPLETED", point.getAttributes().get(AttributeKey.stringKey("phase")));
            assertEquals("POSTCOPY", point.getAttributes().get(AttributeKey.stringKey("mode")));
            assertEquals(1, metric("ferry.migration.downtime").getHistogramData().getPoints().iterator().next().getCount());
            assertTrue(metric("ferry.migration.transferred").getLongSumData().getPoints().iterator().next().getValue() > 0);

            Cli.Result get = ferry("migration", "get", "cli", "--agent", src.controlAddress());
            assertEquals(0, get.exit(), get.err());
            assertTrue(get.out().contains("migrations/cli  COMPLETED  vms/cli -> " + dst.controlAddress()), get.out());
            Cli.Result list = ferry("migration", "list", "--agent", dst.controlAddress(), "--json");
            assertEquals(0, list.exit(), list.err());
            assertTrue(list.out().contains("\"name\":\"migrations/cli\""), "the destination lists it too: " + list.out());

            Cli.Result resume = ferry("migration", "resume", "migrations/cli", "--agent", src.controlAddress());
            assertEquals(2, resume.exit());
            assertTrue(resume.err().startsWith("ferry: FAILED_PRECONDITION: "), resume.err());
            Cli.Result missing = ferry("migration", "get", "nope", "--agent", src.controlAddress());
            assertEquals(2, missing.exit());
            assertTrue(missing.err().startsWith("ferry: NOT_FOUND: "), missing.err());
            Cli.Result bad = ferry("migration", "create", "--agent", src.controlAddress(), "--vm", "cli", "--to", "nowhere");
            assertEquals(2, bad.exit());
            assertTrue(bad.err().startsWith("ferry: INVALID_ARGUMENT: "), bad.err());

            // Without certificates and without --insecure: one line, exit 2, nothing dialled.
            Cli.Result noTls = Cli.run("migration", "get", "cli", "--agent", src.controlAddress());
            assertEquals(2, noTls.exit());
            assertEquals(1, noTls.err().strip().lines().count(), noTls.err());
            assertTrue(noTls.err().contains("--tls-cert, --tls-key and --tls-ca"), noTls.err());
            // A plaintext client reaches nothing: the agent speaks only TLS.
            Cli.Result plain = Cli.run("migration", "get", "cli", "--agent", src.controlAddress(), "--insecure");
            assertEquals(2, plain.exit());
            assertTrue(plain.err().startsWith("ferry: UNAVAILABLE"), plain.err());
            // An agent's certificate may not drive migrations.
            List<String> asAgent = new ArrayList<>(List.of("migration", "get", "cli", "--agent", src.controlAddress()));
            asAgent.addAll(TlsOptions.flags(TlsFiles.in(certs, "agent")));
            Cli.Result agentCli = Cli.run(asAgent.toArray(String[]::new));
            assertEquals(2, agentCli.exit());
            assertTrue(agentCli.err().startsWith("ferry: PERMISSION_DENIED"), agentCli.err());
        }
    }

    /** set-bandwidth lifts the cap of a migration that could not finish under it, and it then completes. */
    @org.junit.jupiter.api.Test
    void setBandwidthChangesARunningMigrationsCap() throws Exception {
        Backend backend = Backend.PROCESS;
        BackendTestSupport.assume(backend);
        try (Agent src = agent("bw-src", backend); Agent dst = agent("bw-dst", backend)) {
            ManagedChannel ch = TransportSecurity.mutualTls(TlsFiles.in(certs, "controller"))
                    .channelBuilder(src.controlAddress()).build();
            try {
                VmServiceGrpc.newBlockingStub(ch).createVm(CreateVmRequest.newBuilder().setVmId("bw").setVm(Vm.newBuilder()
                        .setVcpuCount(1).setMemoryBytes(64 << 20).setWorkload(WorkloadSpec.newBuilder()
                                .setWorkingSetBytes(16 << 20).setDirtyRateBytesPerSecond(1 << 20))).build());
            } finally {
                ch.shutdownNow();
            }
            // 64 KiB/s: 16 MiB would take minutes; the test only ends if the new cap applies.
            Cli.Result create = ferry("migration", "create", "--agent", src.controlAddress(), "--vm", "bw", "--to",
                    dst.controlAddress(), "--id", "bw", "--mode", "precopy", "--bandwidth", "64k", "--json");
            assertEquals(0, create.exit(), create.out() + create.err());
            Cli.Result set = ferry("migration", "set-bandwidth", "bw", "unlimited", "--agent", src.controlAddress(), "--json");
            assertEquals(0, set.exit(), set.out() + set.err());
            JsonNode updated = set.lastJson();
            assertTrue(updated.at("/policy/bandwidthLimitBytesPerSecond").isMissingNode()
                    || updated.at("/policy/bandwidthLimitBytesPerSecond").asLong() == 0, updated.toString());
            Cli.Result watch = ferry("migration", "watch", "bw", "--agent", src.controlAddress(), "--json");
            assertEquals(0, watch.exit(), watch.out() + watch.err());
            assertEquals("COMPLETED", watch.lastJson().get("phase").asText());

            Cli.Result late = ferry("migration", "set-bandwidth", "bw", "10m", "--agent", src.controlAddress());
            assertEquals(2, late.exit());
            assertTrue(late.err().startsWith("ferry: FAILED_PRECONDITION: "), late.err());
            Cli.Result onDestination = ferry("migration", "set-bandwidth", "bw", "10m", "--agent", dst.controlAddress());
            assertEquals(2, onDestination.exit());
            assertTrue(onDestination.err().contains("on its source agent"), onDestination.err());
        }
    }
}
