package dev.ferry.k8s.operator;

import static dev.ferry.k8s.operator.VirtualMachineMigrations.CONTEXT;
import static dev.ferry.k8s.operator.VirtualMachineMigrations.section;
import static dev.ferry.k8s.operator.VirtualMachineMigrations.string;

import dev.ferry.v1.CancelMigrationRequest;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WatchMigrationRequest;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import dev.ferry.security.TransportSecurity;
import java.util.Iterator;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

/**
 * Turns VirtualMachineMigration resources into migrations between Ferry agents: a new resource becomes
 * CreateMigration on the agent of its source node (found by asking every agent for the VM when
 * spec.sourceNode is empty), then the agent's WatchMigration stream is mirrored into .status until the
 * migration ends. Deleting a resource whose migration still runs cancels it (the agent refuses once the
 * destination runs the VM). Every call is idempotent, so a restarted operator picks up where it was.
 */
public final class MigrationOperator implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(MigrationOperator.class.getName());
    private static final long CALL_SECONDS = 30;
    private static final long RETRY_MILLIS = 1000;
    /** Progress is written to .status at most this often; phase changes at once. */
    private static final long STATUS_EVERY_MILLIS = 1000;

    private final KubernetesClient client;
    private final AgentLocator agents;
    private final ConcurrentMap<String, ManagedChannel> channels = new ConcurrentHashMap<>();
    private final ConcurrentMap<String, Future<?>> followed = new ConcurrentHashMap<>(); // by resource uid
    private final ExecutorService workers = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "ferry-operator");
        t.setDaemon(true);
        return t;
    });
    private SharedIndexInformer<GenericKubernetesResource> informer;

    private final TransportSecurity security;

    /**
     * {@code agentPort}: the agents' control port on each node (the DaemonSet's --control);
     * {@code security}: how to dial them (the operator's certificate, trusting the agents' CA).
     */
    public MigrationOperator(KubernetesClient client, int agentPort, TransportSecurity security) {
        this.client = client;
        this.security = security;
        this.agents = new AgentLocator(client, agentPort);
    }

    /** Starts watching VirtualMachineMigration resources in every namespace. */
    public MigrationOperator start() {
        informer = client.genericKubernetesResources(CONTEXT).inAnyNamespace().inform(new ResourceEventHandler<>() {
            @Override
            public void onAdd(GenericKubernetesResource r) {
                reconcile(r);
            }

            @Override
            public void onUpdate(GenericKubernetesResource old, GenericKubernetesResource r) {
                reconcile(r);
            }

            @Override
            public void onDelete(GenericKubernetesResource r, boolean finalStateUnknown) {
                deleted(r);
            }
        });
        return this;
    }

    private void reconcile(GenericKubernetesResource r) {
        String uid = r.getMetadata().getUid();
        if (VirtualMachineMigrations.terminal(string(section(r, "status"), "phase"))
                || followed.putIfAbsent(uid, STARTING) != null) {
            return;
        }
        Future<?> f = workers.submit(() -> {
            try {
                run(r);
            } finally {
                followed.remove(uid);
            }
        });
        followed.replace(uid, STARTING, f); // unless it already ended and removed itself
    }

    /** Stands in for a follower between its reservation and its submission. */
    private static final Future<?> STARTING = java.util.concurrent.CompletableFuture.completedFuture(null);

    /** Starts the migration if the agent does not have it yet, then mirrors it until it ends. */
    private void run(GenericKubernetesResource r) {
        Map<String, Object> spec = section(r, "spec");
        Map<String, Object> status = section(r, "status");
        String sourceNode = string(status, "sourceNode");
        try {
            if (sourceNode.isEmpty()) {
                sourceNode = string(spec, "sourceNode").isEmpty() ? findVm(string(spec, "vm")) : string(spec, "sourceNode");
                String source = address(sourceNode);
                String destination = address(string(spec, "destinationNode"));
                try {
                    migrations(source).createMigration(CreateMigrationRequest.newBuilder()
                            .setMigrationId(VirtualMachineMigrations.migrationId(r))
                            .setMigration(Migration.newBuilder().setVm(string(spec, "vm")).setDestinationAddress(destination)
                                    .setMode(VirtualMachineMigrations.mode(spec))
                                    .setPolicy(VirtualMachineMigrations.policy(spec)))
                            .build());
                } catch (StatusRuntimeException e) {
                    if (e.getStatus().getCode() != Status.Code.ALREADY_EXISTS) { // else: created before a restart
                        throw e;
                    }
                }
            }
            follow(r, sourceNode);
        } catch (StatusRuntimeException e) {
            writeStatus(r, VirtualMachineMigrations.failed(
                    "agent refused: " + e.getStatus().getCode() + ": " + e.getStatus().getDescription()));
        } catch (IllegalArgumentException e) {
            writeStatus(r, VirtualMachineMigrations.failed(e.getMessage()));
        }
    }

    /** Mirrors WatchMigration into .status until the migration ends or the resource is gone. */
    private void follow(GenericKubernetesResource r, String sourceNode) {
        String name = "migrations/" + VirtualMachineMigrations.migrationId(r);
        while (!Thread.currentThread().isInterrupted()) {
            try {
                Iterator<Migration> it = migrationsStreaming(address(sourceNode)).watchMigration(
                        WatchMigrationRequest.newBuilder().setName(name).build());
                String phase = "";
                long written = 0;
                while (it.hasNext()) {
                    Migration m = it.next();
                    long now = System.nanoTime();
                    if (!m.getPhase().name().equals(phase) || now - written > STATUS_EVERY_MILLIS * 1_000_000) {
                        if (!writeStatus(r, VirtualMachineMigrations.status(sourceNode, m))) {
                            return; // the resource is gone
                        }
                        phase = m.getPhase().name();
                        written = now;
                    }
                    if (VirtualMachineMigrations.terminal(phase)) {
                        return;
                    }
                }
            } catch (StatusRuntimeException e) {
                if (Thread.currentThread().isInterrupted()) {
                    return; // the resource was deleted
                }
                if (e.getStatus().getCode() == Status.Code.NOT_FOUND) {
                    writeStatus(r, VirtualMachineMigrations.failed("the agent on " + sourceNode + " no longer knows "
                            + name + " (restarted?); the VM's state there is what counts"));
                    return;
                }
                LOG.log(System.Logger.Level.WARNING, "{0}: watching on {1}: {2}; retrying", name, sourceNode,
                        e.getStatus().getCode() + " " + e.getStatus().getDescription());
            }
            try {
                Thread.sleep(RETRY_MILLIS); // the agent may be restarting: back off, then watch again
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    private void deleted(GenericKubernetesResource r) {
        Future<?> f = followed.remove(r.getMetadata().getUid());
        if (f != null) {
            f.cancel(true);
        }
        Map<String, Object> status = section(r, "status");
        if (string(status, "migration").isEmpty() || VirtualMachineMigrations.terminal(string(status, "phase"))) {
            return;
        }
        workers.submit(() -> {
            try {
                migrations(address(string(status, "sourceNode"))).cancelMigration(
                        CancelMigrationRequest.newBuilder().setName(string(status, "migration")).build());
            } catch (StatusRuntimeException | IllegalArgumentException e) {
                LOG.log(System.Logger.Level.WARNING, "cancelling {0} after its resource was deleted: {1}",
                        string(status, "migration"), e.getMessage());
            }
        });
    }

    /** The node whose agent has {@code vm}. */
    private String findVm(String vm) {
        for (Node n : agents.agentNodes()) {
            Optional<String> a = agents.controlAddress(n);
            if (a.isEmpty()) {
                continue;
            }
            try {
                VmServiceGrpc.newBlockingStub(channel(a.get())).withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS)
                        .getVm(GetVmRequest.newBuilder().setName(vm).build());
                return n.getMetadata().getName();
            } catch (StatusRuntimeException e) {
                // not there, or that agent is down: ask the next
            }
        }
        throw new IllegalArgumentException("no agent has " + vm + "; set spec.sourceNode");
    }

    private String address(String node) {
        return agents.controlAddress(node)
                .orElseThrow(() -> new IllegalArgumentException("node " + node + " has no Ferry agent address"));
    }

    /** False if the resource no longer exists. */
    private boolean writeStatus(GenericKubernetesResource r, Map<String, Object> status) {
        try {
            return client.genericKubernetesResources(CONTEXT).inNamespace(r.getMetadata().getNamespace())
                    .withName(r.getMetadata().getName()).editStatus(x -> {
                        x.setAdditionalProperty("status", status);
                        return x;
                    }) != null;
        } catch (KubernetesClientException e) {
            if (e.getCode() == 404) {
                return false;
            }
            LOG.log(System.Logger.Level.WARNING, "status of {0}: {1}", r.getMetadata().getName(), e.getMessage());
            return true;
        }
    }

    private MigrationServiceGrpc.MigrationServiceBlockingStub migrations(String address) {
        return MigrationServiceGrpc.newBlockingStub(channel(address)).withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS);
    }

    /** Without a deadline: a watch lasts as long as the migration. */
    private MigrationServiceGrpc.MigrationServiceBlockingStub migrationsStreaming(String address) {
        return MigrationServiceGrpc.newBlockingStub(channel(address));
    }

    private ManagedChannel channel(String address) {
        return channels.computeIfAbsent(address, a -> security.channelBuilder(a).build());
    }

    @Override
    public void close() {
        if (informer != null) {
            informer.close();
        }
        workers.shutdownNow();
        channels.values().forEach(ManagedChannel::shutdownNow);
    }
}
