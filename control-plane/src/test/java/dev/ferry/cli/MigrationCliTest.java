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
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.sdk.OpenTelemetrySdk;
import io.opentelemetry.sdk.metrics.SdkMeterProvider;
import io.opentelemetry.sdk.metrics.data.MetricData;
import io.opentelemetry.sdk.testing.exporter.InMemoryMetricReader;
import java.net.InetSocketAddress;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** {@code ferry migration}, against two real agents (in this JVM) migrating a real guest; and what it counts. */
class MigrationCliTest {


    private final InMemoryMetricReader metrics = InMemoryMetricReader.create();
    private final OpenTelemetrySdk telemetry = OpenTelemetrySdk.builder()
            .setMeterProvider(SdkMeterProvider.builder().registerMetricReader(metrics).build()).build();

    private Agent agent(String name, Backend backend) throws Exception {
        InetSocketAddress any = new InetSocketAddress("127.0.0.1", 0);
        return Agent.start(name, any, any, line -> { }, Backends.open(Backends.Choice.valueOf(backend.name())),
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
            ManagedChannel ch = NettyChannelBuilder.forTarget(src.controlAddress()).usePlaintext().build();
            try {
                VmServiceGrpc.newBlockingStub(ch).createVm(CreateVmRequest.newBuilder().setVmId("cli").setVm(Vm.newBuilder().setVcpuCount(1)
                        .setMemoryBytes(64 << 20).setWorkload(WorkloadSpec.newBuilder().setWorkingSetBytes(16 << 20)
                                .setDirtyRateBytesPerSecond(4 << 20))).build());
            } finally {
                ch.shutdownNow();
            }

            Cli.Result run = Cli.run("migration", "create", "--agent", src.controlAddress(), "--vm", "cli", "--to",
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

            Cli.Result get = Cli.run("migration", "get", "cli", "--agent", src.controlAddress());
            assertEquals(0, get.exit(), get.err());
            assertTrue(get.out().contains("migrations/cli  COMPLETED  vms/cli -> " + dst.controlAddress()), get.out());
            Cli.Result list = Cli.run("migration", "list", "--agent", dst.controlAddress(), "--json");
            assertEquals(0, list.exit(), list.err());
            assertTrue(list.out().contains("\"name\":\"migrations/cli\""), "the destination lists it too: " + list.out());

            Cli.Result resume = Cli.run("migration", "resume", "migrations/cli", "--agent", src.controlAddress());
            assertEquals(2, resume.exit());
            assertTrue(resume.err().startsWith("ferry: FAILED_PRECONDITION: "), resume.err());
            Cli.Result missing = Cli.run("migration", "get", "nope", "--agent", src.controlAddress());
            assertEquals(2, missing.exit());
            assertTrue(missing.err().startsWith("ferry: NOT_FOUND: "), missing.err());
            Cli.Result bad = Cli.run("migration", "create", "--agent", src.controlAddress(), "--vm", "cli", "--to", "nowhere");
            assertEquals(2, bad.exit());
            assertTrue(bad.err().startsWith("ferry: INVALID_ARGUMENT: "), bad.err());
        }
    }
}
