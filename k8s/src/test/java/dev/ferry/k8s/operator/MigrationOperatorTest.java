package dev.ferry.k8s.operator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.backends.Backends;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.migration.MigrationServices;
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
import io.fabric8.kubernetes.client.server.mock.EnableKubernetesMockClient;
import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.io.FileInputStream;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The operator against the Kubernetes client's API-server emulation (CRUD mode: objects are stored,
 * watched and patched as by a real API server) and real agents in this JVM migrating a real guest.
 */
@EnableKubernetesMockClient(crud = true)
class MigrationOperatorTest {
    KubernetesClient client;
    private final List<AutoCloseable> open = new ArrayList<>();

    @BeforeEach
    void crd() throws Exception {
        try (InputStream in = new FileInputStream("manifests/crd-virtualmachinemigration.yaml")) {
            client.apiextensions().v1().customResourceDefinitions().load(in).create();
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
        Agent a = Agent.start(node, any, any, line -> { }, Backends.open(Backends.Choice.PROCESS), MigrationServices::new);
        open.add(a);
        client.nodes().resource(new NodeBuilder().withNewMetadata().withName(node)
                .addToLabels(AgentLocator.KVM_LABEL, "true")
                .addToAnnotations(AgentLocator.ADDRESS_ANNOTATION, a.controlAddress()).endMetadata().build()).create();
        return a;
    }

    private ManagedChannel channel(Agent a) {
        ManagedChannel ch = NettyChannelBuilder.forTarget(a.controlAddress()).usePlaintext().build();
        open.add(ch::shutdownNow);
        return ch;
    }

    private void startOperator() {
        open.add(0, new MigrationOperator(client, 1).start()); // closed first
    }

    private Resource<GenericKubernetesResource> create(String name, Map<String, Object> spec) {
        GenericKubernetesResource r = new GenericKubernetesResource();
        r.setApiVersion("ferry.dev/v1alpha1");
        r.setKind("VirtualMachineMigration");
        r.setMetadata(new io.fabric8.kubernetes.api.model.ObjectMetaBuilder().withName(name).withNamespace("default").build());
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
        var it = agent.watchMigration(WatchMigrationRequest.newBuilder().setName(migration).build());
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
        Map<String, Object> s = status(awaitEnd(create("ghost", Map.of("vm", "vms/ghost", "destinationNode", "node-a"))));
        assertEquals("FAILED", s.get("phase"));
        assertTrue(s.get("message").toString().contains("no agent has vms/ghost"), s.toString());
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
}
