package dev.ferry.k8s.operator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.backends.Backends;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.migration.MigrationServices;
import dev.ferry.k8s.apiserver.PruningApiServer;
import dev.ferry.k8s.apiserver.StructuralSchema;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.GetMigrationRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WatchMigrationRequest;
import dev.ferry.v1.WorkloadSpec;
import dev.ferry.vm.Backend;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.NodeBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.dsl.Resource;
import io.grpc.ManagedChannel;
import dev.ferry.security.CertificateAuthority;
import dev.ferry.security.TlsFiles;
import dev.ferry.security.TransportSecurity;
import java.io.FileInputStream;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The operator against the Kubernetes client's API-server emulation (CRUD mode: objects are stored,
 * watched and patched as by a real API server, and pruned to the CRD's schema as a real one prunes
 * them) and real agents in this JVM migrating a real guest.
 */
class MigrationOperatorTest {
    private PruningApiServer apiServer;
    private KubernetesClient client;
    private final List<AutoCloseable> open = new ArrayList<>();
    @org.junit.jupiter.api.io.TempDir
    static java.nio.file.Path certs;

    @org.junit.jupiter.api.BeforeAll
    static void certificates() throws Exception {
        CertificateAuthority.init(certs, List.of(), List.of());
    }

    @BeforeEach
    void crd() throws Exception {
        apiServer = new PruningApiServer(Map.of("virtualmachinemigrations",
                StructuralSchema.ofCrd(Path.of("manifests/crd-virtualmachinemigration.yaml")),
                "migrationpolicies", StructuralSchema.ofCrd(Path.of("manifests/crd-migrationpolicy.yaml"))));
        client = apiServer.client();
        open.add(apiServer);
        for (String crd : List.of("manifests/crd-virtualmachinemigration.yaml", "manifests/crd-migrationpolicy.yaml")) {
            try (InputStream in = new FileInputStream(crd)) {
                client.apiextensions().v1().customResourceDefinitions().load(in).create();
            }
        }
    }

    @AfterEach
    void close() throws Exception {
        for (AutoCloseable c : open) {
            c.close();
        }
    }

    private Agent agentOn(String node) throws Exception {
        InetSocketAddress any = new InetSocketAddress("127.0.0.1", 0);
        Agent a = Agent.start(node, TransportSecurity.mutualTls(TlsFiles.in(certs, "agent")), any, any, line -> { },
                Backends.open(Backends.Choice.PROCESS), MigrationServices::new);
        open.add(a);
        client.nodes().resource(new NodeBuilder().withNewMetadata().withName(node)
                .addToLabels(AgentLocator.KVM_LABEL, "true")
                .addToAnnotations(AgentLocator.ADDRESS_ANNOTATION, a.controlAddress()).endMetadata().build()).create();
        return a;
    }

    private ManagedChannel channel(Agent a) throws Exception {
        ManagedChannel ch = TransportSecurity.mutualTls(TlsFiles.in(certs, "controller")).channelBuilder(a.controlAddress())
                .build();
        open.add(ch::shutdownNow);
        return ch;
    }

    private MigrationOperator startOperator() throws Exception {
        return startOperator(MigrationOperator.Settings.DEFAULT);
    }

    private MigrationOperator startOperator(MigrationOperator.Settings settings) throws Exception {
        MigrationOperator o = newOperator(settings).start();
        open.add(0, o); // closed first
        return o;
    }

    private MigrationOperator newOperator(MigrationOperator.Settings settings) throws Exception {
        return new MigrationOperator(client, 1, TransportSecurity.mutualTls(TlsFiles.in(certs, "operator")), settings);
    }

    /** The reasons of the Events about the resource {@code name}, oldest first. */
    private List<String> eventReasons(String name) {
        return client.v1().events().inNamespace("default").list().getItems().stream()
                .filter(e -> name.equals(e.getInvolvedObject().getName()))
                .sorted(java.util.Comparator.comparing(e -> e.getMetadata().getName()))
                .map(io.fabric8.kubernetes.api.model.Event::getReason).toList();
    }

    private static Map<String, Object> condition(GenericKubernetesResource r, String type) {
        return Conditions.find(status(r), type);
    }

    private void createVm(Agent a, String id, int memoryMiB, int workingSetMiB) throws Exception {
        VmServiceGrpc.newBlockingStub(channel(a)).createVm(CreateVmRequest.newBuilder().setVmId(id).setVm(Vm.newBuilder()
                .setVcpuCount(1).setMemoryBytes((long) memoryMiB << 20).setWorkload(WorkloadSpec.newBuilder()
                        .setWorkingSetBytes((long) workingSetMiB << 20).setDirtyRateBytesPerSecond(4 << 20))).build());
    }

    private Resource<GenericKubernetesResource> create(String name, Map<String, Object> spec) {
        return create(name, Map.of(), spec);
    }

    private Resource<GenericKubernetesResource> create(String name, Map<String, String> labels, Map<String, Object> spec) {
        GenericKubernetesResource r = new GenericKubernetesResource();
        r.setApiVersion("ferry.dev/v1alpha1");
        r.setKind("VirtualMachineMigration");
        r.setMetadata(new io.fabric8.kubernetes.api.model.ObjectMetaBuilder().withName(name).withNamespace("default")
                .withLabels(labels).build());
        r.setAdditionalProperty("spec", spec);
        client.genericKubernetesResources(VirtualMachineMigrations.CONTEXT).inNamespace("default").resource(r).create();
        return client.genericKubernetesResources(VirtualMachineMigrations.CONTEXT).inNamespace("default").withName(name);
    }

    private static Map<String, Object> status(GenericKubernetesResource r) {
        return VirtualMachineMigrations.section(r, "status");
    }

    /** Waits on the API server's watch until the status reaches a final phase. */
    private static GenericKubernetesResource awaitEnd(Resource<GenericKubernetesResource> r) {
        return r.waitUntilCondition(x -> x != null
                && VirtualMachineMigrations.terminal(VirtualMachineMigrations.string(status(x), "phase")), 120, TimeUnit.SECONDS);
    }

    @Test
    void aResourceBecomesAMigrationWhoseProgressIsMirroredToTheEnd() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS); // the operator's logic is the same on every backend
        Agent a = agentOn("node-a");
        Agent b = agentOn("node-b");
        VmServiceGrpc.newBlockingStub(channel(a)).createVm(CreateVmRequest.newBuilder().setVmId("op").setVm(Vm.newBuilder().setVcpuCount(1)
                .setMemoryBytes(64 << 20).setWorkload(WorkloadSpec.newBuilder().setWorkingSetBytes(16 << 20)
                        .setDirtyRateBytesPerSecond(4 << 20))).build());
        startOperator();

        GenericKubernetesResource end = awaitEnd(create("move-op", Map.of("vm", "vms/op", "destinationNode", "node-b",
                "mode", "POSTCOPY", "policy", Map.of("maxDowntime", "50ms"))));
        Map<String, Object> s = status(end);
        assertEquals("COMPLETED", s.get("phase"), s.toString());
        assertEquals(true, s.get("memoryVerified"), s.toString());
        assertEquals("node-a", s.get("sourceNode"), "found by asking the agents");
        assertEquals("migrations/vmm-" + end.getMetadata().getUid().toLowerCase(), s.get("migration"));
        assertTrue(s.get("downtime").toString().endsWith("ms"), s.toString());
        assertEquals(Vm.State.RUNNING, VmServiceGrpc.newBlockingStub(channel(b))
                .getVm(GetVmRequest.newBuilder().setName("vms/op").build()).getState(), "the VM runs on node-b");
        // Kubernetes conditions and observedGeneration
        assertEquals("True", condition(end, "Succeeded").get("status"), s.toString());
        assertEquals("False", condition(end, "Running").get("status"), s.toString());
        assertEquals("False", condition(end, "Failed").get("status"), s.toString());
        assertEquals("Succeeded", condition(end, "Succeeded").get("reason"));
        assertEquals(end.getMetadata().getGeneration(), ((Number) s.get("observedGeneration")).longValue());
        // the finalizer is let go once nothing is left to cancel
        GenericKubernetesResource released = client.genericKubernetesResources(VirtualMachineMigrations.CONTEXT)
                .inNamespace("default").withName("move-op").waitUntilCondition(
                        x -> !x.getMetadata().getFinalizers().contains(MigrationOperator.FINALIZER), 30, TimeUnit.SECONDS);
        assertTrue(released.getMetadata().getFinalizers().isEmpty());
        // an Event for each phase change, ending with the success
        await(() -> eventReasons("move-op").contains("Succeeded"));
        List<String> reasons = eventReasons("move-op");
        assertTrue(reasons.contains("Migrating"), reasons.toString());
    }

    /** Polls the emulated API server (which has no watch for Events here) until {@code what} holds, 30 s at most. */
    private static void await(java.util.function.BooleanSupplier what) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!what.getAsBoolean()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("not reached in 30 s");
            }
            Thread.sleep(50);
        }
    }

    @Test
    void deletingTheResourceCancelsAMigrationStillInPrecopy() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        Agent a = agentOn("node-a");
        agentOn("node-b");
        VmServiceGrpc.newBlockingStub(channel(a)).createVm(CreateVmRequest.newBuilder().setVmId("slow").setVm(Vm.newBuilder().setVcpuCount(1)
                .setMemoryBytes(128 << 20).setWorkload(WorkloadSpec.newBuilder().setWorkingSetBytes(64 << 20)
                        .setDirtyRateBytesPerSecond(4 << 20))).build());
        startOperator();
        var r = create("move-slow", Map.of("vm", "vms/slow", "sourceNode", "node-a", "destinationNode", "node-b",
                "policy", Map.of("bandwidthLimitBytesPerSecond", 1 << 20)));
        GenericKubernetesResource running = r.waitUntilCondition(x -> x != null
                && "PRECOPY".equals(status(x).get("phase")), 60, TimeUnit.SECONDS);
        String migration = status(running).get("migration").toString();
        r.delete();
        var agent = MigrationServiceGrpc.newBlockingStub(channel(a));
        // Bounded: if the cancel never arrives, the test fails instead of following a 128 s migration.
        var it = agent.withDeadlineAfter(60, TimeUnit.SECONDS).watchMigration(WatchMigrationRequest.newBuilder().setName(migration).build());
        Migration last = null;
        while (it.hasNext()) {
            last = it.next();
        }
        assertEquals(Migration.Phase.CANCELLED, last.getPhase(), "deleting the resource cancelled the migration");
        assertEquals(Migration.Phase.CANCELLED, agent.getMigration(GetMigrationRequest.newBuilder().setName(migration)
                .build()).getPhase());
        assertEquals(Vm.State.RUNNING, VmServiceGrpc.newBlockingStub(channel(a))
                .getVm(GetVmRequest.newBuilder().setName("vms/slow").build()).getState(), "the VM stays on node-a");
    }

    @Test
    void aVmNoAgentHasFailsTheResourceWithTheReason() throws Exception {
        agentOn("node-a");
        startOperator();
        GenericKubernetesResource end = awaitEnd(create("ghost", Map.of("vm", "vms/ghost", "destinationNode", "node-a")));
        Map<String, Object> s = status(end);
        assertEquals("FAILED", s.get("phase"));
        assertTrue(s.get("message").toString().contains("no agent has vms/ghost"), s.toString());
        assertEquals("True", condition(end, "Failed").get("status"));
        assertEquals("InvalidSpec", condition(end, "Failed").get("reason"));
        await(() -> eventReasons("ghost").contains("InvalidSpec"));
        assertEquals("Warning", client.v1().events().inNamespace("default").list().getItems().stream()
                .filter(e -> e.getInvolvedObject().getName().equals("ghost")).findFirst().orElseThrow().getType());
    }

    @Test
    void anUnknownDestinationNodeFailsTheResourceWithTheReason() throws Exception {
        agentOn("node-a");
        startOperator();
        Map<String, Object> s = status(awaitEnd(create("nowhere", Map.of("vm", "vms/x", "sourceNode", "node-a",
                "destinationNode", "node-z"))));
        assertEquals("FAILED", s.get("phase"));
        assertTrue(s.get("message").toString().contains("node node-z has no Ferry agent address"), s.toString());
    }

    @Test
    void aRestartedOperatorFollowsWhatItStartedAndReportsAMigrationTheAgentLost() throws Exception {
        agentOn("node-a");
        var r = create("lost", Map.of("vm", "vms/x", "sourceNode", "node-a", "destinationNode", "node-a"));
        // As a previous operator left it: started on node-a, still running.
        r.editStatus(x -> {
            x.setAdditionalProperty("status", Map.of("sourceNode", "node-a", "phase", "PRECOPY",
                    "migration", "migrations/" + VirtualMachineMigrations.migrationId(x)));
            return x;
        });
        startOperator();
        Map<String, Object> s = status(awaitEnd(r));
        assertEquals("FAILED", s.get("phase"));
        assertTrue(s.get("message").toString().contains("no longer knows"), s.toString());
    }

    /** Runs until the agent's watch ends (bounded), returning the migration's last phase. */
    private Migration.Phase lastPhase(Agent a, String migration) throws Exception {
        var it = MigrationServiceGrpc.newBlockingStub(channel(a)).withDeadlineAfter(60, TimeUnit.SECONDS)
                .watchMigration(WatchMigrationRequest.newBuilder().setName(migration).build());
        Migration last = null;
        while (it.hasNext()) {
            last = it.next();
        }
        return last.getPhase();
    }

    private static boolean inPhase(GenericKubernetesResource x, String... phases) {
        return x != null && List.of(phases).contains(VirtualMachineMigrations.string(status(x), "phase"));
    }

    @Test
    void theFinalizerHoldsADeletedResourceUntilAnOperatorHasCancelledItsMigration() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        Agent a = agentOn("node-a");
        agentOn("node-b");
        createVm(a, "held", 128, 64);
        MigrationOperator first = startOperator();
        var r = create("move-held", Map.of("vm", "vms/held", "sourceNode", "node-a", "destinationNode", "node-b",
                "policy", Map.of("bandwidthLimitBytesPerSecond", 1 << 20)));
        GenericKubernetesResource running = r.waitUntilCondition(x -> inPhase(x, "PRECOPY"), 60, TimeUnit.SECONDS);
        assertEquals(List.of(MigrationOperator.FINALIZER), running.getMetadata().getFinalizers());
        assertEquals("True", condition(running, "Running").get("status"));
        first.close(); // no operator runs when the resource is deleted
        r.delete();
        GenericKubernetesResource held = r.get();
        assertTrue(held != null && held.getMetadata().getDeletionTimestamp() != null, "the finalizer holds it");
        String migration = status(held).get("migration").toString();
        startOperator();
        assertEquals(Migration.Phase.CANCELLED, lastPhase(a, migration), "the next operator cancelled it");
        r.waitUntilCondition(java.util.Objects::isNull, 90, TimeUnit.SECONDS); // then let it go
        await(() -> eventReasons("move-held").contains("Cancelled"));
    }

    @Test
    void aThirdMigrationOutOfANodeWaitsPendingUntilOneOfTwoEnds() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        Agent a = agentOn("node-a");
        agentOn("node-b");
        for (String vm : List.of("q1", "q2", "q3")) {
            createVm(a, vm, 64, 32);
        }
        var reader = io.opentelemetry.sdk.testing.exporter.InMemoryMetricReader.create();
        var telemetry = io.opentelemetry.sdk.OpenTelemetrySdk.builder().setMeterProvider(
                io.opentelemetry.sdk.metrics.SdkMeterProvider.builder().registerMetricReader(reader).build()).build();
        startOperator(new MigrationOperator.Settings(2, 5, "op-0", telemetry));
        List<Resource<GenericKubernetesResource>> rs = new ArrayList<>();
        for (String vm : List.of("q1", "q2", "q3")) { // created in this order: q3 is the one that waits
            rs.add(create("move-" + vm, Map.of("vm", "vms/" + vm, "sourceNode", "node-a", "destinationNode", "node-b",
                    "policy", Map.of("bandwidthLimitBytesPerSecond", 1 << 20))));
            rs.get(rs.size() - 1).waitUntilCondition(x -> inPhase(x, "PENDING", "QUEUED", "NEGOTIATING", "PRECOPY"),
                    30, TimeUnit.SECONDS);
        }
        rs.get(0).waitUntilCondition(x -> inPhase(x, "PRECOPY"), 60, TimeUnit.SECONDS);
        rs.get(1).waitUntilCondition(x -> inPhase(x, "PRECOPY"), 60, TimeUnit.SECONDS);
        GenericKubernetesResource third = rs.get(2).waitUntilCondition(x -> inPhase(x, "PENDING"), 30, TimeUnit.SECONDS);
        assertEquals("NodeLimitReached", condition(third, "Running").get("reason"), status(third).toString());
        assertEquals("False", condition(third, "Running").get("status"));
        assertTrue(status(third).get("message").toString().contains("node-a (limit 2)"), status(third).toString());
        assertEquals(null, status(third).get("migration"), "the agent was not asked yet");
        await(() -> eventReasons("move-q3").contains("NodeLimitReached"));
        assertEquals(1L, gauge(reader, "ferry.operator.queue.depth"), "the queue's depth is a metric");
        var metrics = reader.collectAllMetrics();
        assertEquals(1L, metrics.stream().filter(m -> m.getName().equals("ferry.operator.migrations"))
                .flatMap(m -> m.getLongGaugeData().getPoints().stream())
                .filter(p -> "PENDING".equals(p.getAttributes().get(OperatorMetrics.PHASE)))
                .mapToLong(p -> p.getValue()).sum(), "resources by phase");
        assertTrue(metrics.stream().filter(m -> m.getName().equals("ferry.operator.reconciles"))
                .flatMap(m -> m.getLongSumData().getPoints().stream())
                .filter(p -> "queued".equals(p.getAttributes().get(OperatorMetrics.RESULT)))
                .mapToLong(p -> p.getValue()).sum() >= 1, "reconciles by result");

        rs.get(0).delete(); // the first one ends (cancelled): the third takes its slot
        GenericKubernetesResource started = rs.get(2).waitUntilCondition(x -> inPhase(x, "QUEUED", "NEGOTIATING",
                "PRECOPY", "STOP_AND_COPY", "COMPLETED"), 60, TimeUnit.SECONDS);
        assertTrue(status(started).get("migration").toString().startsWith("migrations/vmm-"));
        assertEquals("True", condition(rs.get(2).waitUntilCondition(x -> inPhase(x, "PRECOPY"), 60, TimeUnit.SECONDS),
                "Running").get("status"), "running now");
        assertEquals(0L, gauge(reader, "ferry.operator.queue.depth"));
        assertTrue(gauge(reader, "ferry.operator.migrations.running") <= 2, "never more than 2 out of node-a");
    }

    @Test
    void theClusterLimitHoldsAMigrationFromAnotherNodeUntilTheRunningOneEnds() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        Agent a = agentOn("node-a");
        Agent b = agentOn("node-b");
        createVm(a, "c1", 64, 32);
        createVm(b, "c2", 64, 32);
        startOperator(new MigrationOperator.Settings(2, 1, "op-0", io.opentelemetry.api.OpenTelemetry.noop()));
        var first = create("move-c1", Map.of("vm", "vms/c1", "sourceNode", "node-a", "destinationNode", "node-b",
                "policy", Map.of("bandwidthLimitBytesPerSecond", 1 << 20)));
        first.waitUntilCondition(x -> inPhase(x, "PRECOPY"), 60, TimeUnit.SECONDS);
        var second = create("move-c2", Map.of("vm", "vms/c2", "sourceNode", "node-b", "destinationNode", "node-a",
                "policy", Map.of("bandwidthLimitBytesPerSecond", 1 << 20)));
        GenericKubernetesResource held = second.waitUntilCondition(x -> inPhase(x, "PENDING"), 30, TimeUnit.SECONDS);
        assertEquals("ClusterLimitReached", condition(held, "Running").get("reason"), status(held).toString());
        first.delete();
        assertEquals("True", condition(second.waitUntilCondition(x -> inPhase(x, "PRECOPY"), 60, TimeUnit.SECONDS),
                "Running").get("status"));
        second.delete(); // the finalizer holds it until the agent cancelled the migration (seconds on a loaded host)
        second.waitUntilCondition(java.util.Objects::isNull, 90, TimeUnit.SECONDS);
    }

    private static long gauge(io.opentelemetry.sdk.testing.exporter.InMemoryMetricReader reader, String name) {
        return reader.collectAllMetrics().stream().filter(m -> m.getName().equals(name))
                .flatMap(m -> m.getLongGaugeData().getPoints().stream()).mapToLong(p -> p.getValue()).sum();
    }

    private GenericKubernetesResource createPolicy(String name, Map<String, String> selector, Map<String, Object> settings) {
        GenericKubernetesResource p = MigrationPoliciesTest.policy(name, selector, Map.of(), settings);
        client.genericKubernetesResources(MigrationPolicies.CONTEXT).resource(p).create();
        return p;
    }

    @Test
    void aPolicySelectsByTheVmsLabelsOnItsAgentAndTheMigratedVmKeepsThem() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        Agent a = agentOn("node-a");
        Agent b = agentOn("node-b");
        VmServiceGrpc.newBlockingStub(channel(a)).createVm(CreateVmRequest.newBuilder().setVmId("lab").setVm(Vm.newBuilder()
                .setVcpuCount(1).setMemoryBytes(64L << 20).putLabels("app", "web").setWorkload(WorkloadSpec.newBuilder()
                        .setWorkingSetBytes(16L << 20).setDirtyRateBytesPerSecond(4 << 20))).build());
        GenericKubernetesResource web = MigrationPoliciesTest.policy("web-vms", Map.of(), Map.of(),
                Map.of("maxDowntime", "40ms"));
        @SuppressWarnings("unchecked")
        Map<String, Object> spec = (Map<String, Object>) web.getAdditionalProperties().get("spec");
        spec.put("selectors", Map.of("virtualMachineSelector", Map.of("app", "web")));
        client.genericKubernetesResources(MigrationPolicies.CONTEXT).resource(web).create();
        createPolicy("db-vms", Map.of("app", "db"), Map.of("maxDowntime", "90ms"));
        startOperator();
        GenericKubernetesResource end = awaitEnd(create("move-lab", Map.of("vm", "vms/lab", "destinationNode", "node-b")));
        Map<String, Object> s = status(end);
        assertEquals("COMPLETED", s.get("phase"), s.toString());
        assertEquals("web-vms", s.get("migrationPolicy"), "selected by the VM's own labels");
        Migration m = MigrationServiceGrpc.newBlockingStub(channel(a)).getMigration(GetMigrationRequest.newBuilder()
                .setName(s.get("migration").toString()).build());
        assertEquals(40_000_000, m.getPolicy().getMaxDowntime().getNanos());
        Vm moved = VmServiceGrpc.newBlockingStub(channel(b)).getVm(dev.ferry.v1.GetVmRequest.newBuilder()
                .setName(m.getDestinationVm()).build());
        assertEquals(Map.of("app", "web"), moved.getLabelsMap(), "the destination VM took the labels");
    }

    @Test
    void theMostSpecificMatchingPolicyFillsInWhatTheSpecLeavesUnset() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        Agent a = agentOn("node-a");
        agentOn("node-b");
        createVm(a, "pol", 64, 16);
        createPolicy("team-a", Map.of("team", "a"), Map.of("maxDowntime", "40ms", "bandwidthLimitBytesPerSecond", 1 << 20));
        createPolicy("team-a-gold", Map.of("team", "a", "tier", "gold"), Map.of("mode", "HYBRID",
                "maxDowntime", "20ms", "completionTimeout", "10m", "allowAutoConverge", true));
        startOperator();
        GenericKubernetesResource end = awaitEnd(create("move-pol", Map.of("team", "a", "tier", "gold"),
                Map.of("vm", "vms/pol", "destinationNode", "node-b", "policy", Map.of("maxDowntime", "50ms"))));
        Map<String, Object> s = status(end);
        assertEquals("COMPLETED", s.get("phase"), s.toString());
        assertEquals("team-a-gold", s.get("migrationPolicy"), "two selector labels beat one");
        Migration m = MigrationServiceGrpc.newBlockingStub(channel(a)).getMigration(GetMigrationRequest.newBuilder()
                .setName(s.get("migration").toString()).build());
        assertEquals(dev.ferry.v1.MigrationMode.HYBRID, m.getMode(), "the policy's mode: the spec has none");
        assertEquals(50_000_000, m.getPolicy().getMaxDowntime().getNanos(), "the spec's own maxDowntime wins");
        assertEquals(600, m.getPolicy().getMaxTotalTime().getSeconds(), "completionTimeout");
        assertEquals(0, m.getPolicy().getBandwidthLimitBytesPerSecond(), "nothing from the policy that lost");
        assertTrue(m.getPolicy().getAutoConverge().getEnabled(), "allowAutoConverge reached the agent");
        GenericKubernetesResource accepted = client.genericKubernetesResources(MigrationPolicies.CONTEXT)
                .withName("team-a-gold").waitUntilCondition(x -> "True".equals(Conditions.find(
                        VirtualMachineMigrations.section(x, "status"), "Accepted").get("status")), 30, TimeUnit.SECONDS);
        assertEquals(accepted.getMetadata().getGeneration(),
                ((Number) VirtualMachineMigrations.section(accepted, "status").get("observedGeneration")).longValue());
    }

    @Test
    void aPolicyTheOperatorCannotReadIsRefusedAndFailsTheMigrationsItWouldApplyTo() throws Exception {
        agentOn("node-a");
        createPolicy("converge", Map.of("app", "db"), Map.of("completionTimeout", "a while"));
        startOperator();
        GenericKubernetesResource refused = client.genericKubernetesResources(MigrationPolicies.CONTEXT)
                .withName("converge").waitUntilCondition(x -> "False".equals(Conditions.find(
                        VirtualMachineMigrations.section(x, "status"), "Accepted").get("status")), 30, TimeUnit.SECONDS);
        Map<String, Object> c = Conditions.find(VirtualMachineMigrations.section(refused, "status"), "Accepted");
        assertEquals("Invalid", c.get("reason"));
        assertTrue(c.get("message").toString().contains("'a while' is not a duration"), c.toString());
        GenericKubernetesResource end = awaitEnd(create("move-db", Map.of("app", "db"),
                Map.of("vm", "vms/db", "sourceNode", "node-a", "destinationNode", "node-a")));
        assertEquals("PolicyRefused", condition(end, "Failed").get("reason"), status(end).toString());
        assertTrue(status(end).get("message").toString().contains("MigrationPolicy converge"), status(end).toString());
    }

    @Test
    void twoReplicasElectOneLeaderThatActsAndTheOtherTakesOverWhenItStops() throws Exception {
        agentOn("node-a");
        var timing = new OperatorReplica.Timing(java.time.Duration.ofSeconds(2), java.time.Duration.ofMillis(1500),
                java.time.Duration.ofMillis(200));
        java.util.concurrent.atomic.AtomicInteger lost = new java.util.concurrent.atomic.AtomicInteger();
        List<OperatorReplica> replicas = new ArrayList<>();
        for (String id : List.of("op-0", "op-1")) {
            OperatorReplica r = new OperatorReplica(client, "default", "ferry-operator", id, timing,
                    () -> newOperatorUnchecked(new MigrationOperator.Settings(2, 5, id,
                            io.opentelemetry.api.OpenTelemetry.noop())), lost::incrementAndGet);
            replicas.add(r);
            open.add(0, r);
        }
        await(() -> replicas.stream().anyMatch(OperatorReplica::leading));
        OperatorReplica leader = replicas.stream().filter(OperatorReplica::leading).findFirst().orElseThrow();
        OperatorReplica other = replicas.get(replicas.get(0) == leader ? 1 : 0);
        assertEquals(leader.identity(), client.leases().inNamespace("default").withName("ferry-operator").get()
                .getSpec().getHolderIdentity());
        awaitEnd(create("ghost-1", Map.of("vm", "vms/ghost", "destinationNode", "node-a")));
        await(() -> !eventReporters("ghost-1").isEmpty());
        assertEquals(java.util.Set.of(leader.identity()), eventReporters("ghost-1"), "only the leader acted");
        assertTrue(!other.leading());

        leader.close(); // releases the Lease
        await(other::leading);
        assertEquals(other.identity(), client.leases().inNamespace("default").withName("ferry-operator").get()
                .getSpec().getHolderIdentity());
        awaitEnd(create("ghost-2", Map.of("vm", "vms/ghost", "destinationNode", "node-a")));
        await(() -> !eventReporters("ghost-2").isEmpty());
        assertEquals(java.util.Set.of(other.identity()), eventReporters("ghost-2"), "the new leader acts");
        assertEquals(0, lost.get(), "a replica that closes does not report a lost lease");
    }

    private java.util.Set<String> eventReporters(String name) {
        return client.v1().events().inNamespace("default").list().getItems().stream()
                .filter(e -> name.equals(e.getInvolvedObject().getName()))
                .map(io.fabric8.kubernetes.api.model.Event::getReportingInstance)
                .collect(java.util.stream.Collectors.toSet());
    }

    private MigrationOperator newOperatorUnchecked(MigrationOperator.Settings settings) {
        try {
            return newOperator(settings);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }
}
