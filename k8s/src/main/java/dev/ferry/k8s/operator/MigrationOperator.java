package dev.ferry.k8s.operator;

import static dev.ferry.k8s.operator.VirtualMachineMigrations.CONTEXT;
import static dev.ferry.k8s.operator.VirtualMachineMigrations.section;
import static dev.ferry.k8s.operator.VirtualMachineMigrations.string;

import dev.ferry.security.TransportSecurity;
import dev.ferry.v1.CancelMigrationRequest;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WatchMigrationRequest;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.Namespace;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.metrics.Meter;
import java.time.Instant;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;

/**
 * Turns VirtualMachineMigration resources into migrations between Ferry agents. A new resource gets the
 * finalizer {@value #FINALIZER}, its source node (found by asking every agent for the VM when
 * spec.sourceNode is empty) and the MigrationPolicy that applies; then it waits for a slot under the
 * per-node and per-cluster limits (phase PENDING), becomes CreateMigration on the source node's agent,
 * and the agent's WatchMigration stream is mirrored into .status (phase, conditions, observedGeneration)
 * until the migration ends, with an Event at each phase change. Deleting a resource whose migration
 * still runs cancels it on the agent before the finalizer is removed (the agent refuses once the
 * destination runs the VM). Every call is idempotent, so a restarted operator picks up where it was.
 */
public final class MigrationOperator implements AutoCloseable {
    /** Held while the operator may still have to cancel the resource's migration. */
    public static final String FINALIZER = "migrations.ferry.dev/cancel";
    private static final System.Logger LOG = System.getLogger(MigrationOperator.class.getName());
    private static final long CALL_SECONDS = 30;
    private static final long RETRY_MILLIS = 1000;
    /** Edits tried per change when each meets a conflicting write (see onConflictRetry). */
    private static final int CONFLICT_ATTEMPTS = 5;
    /** Progress is written to .status at most this often; phase changes at once. */
    private static final long STATUS_EVERY_MILLIS = 1000;

    /**
     * {@code maxPerNode}/{@code maxPerCluster}: concurrent migrations out of one node and in all;
     * {@code identity}: this replica's name in Events; {@code telemetry}: where its metrics go.
     */
    public record Settings(int maxPerNode, int maxPerCluster, String identity, OpenTelemetry telemetry) {
        public static final Settings DEFAULT = new Settings(Admission.DEFAULT_PER_NODE, Admission.DEFAULT_PER_CLUSTER,
                "ferry-operator", OpenTelemetry.noop());
    }

    /** A migration admitted or waiting for admission: what to create, where. */
    private record Start(GenericKubernetesResource resource, String sourceNode, CreateMigrationRequest request) {}

    private final KubernetesClient client;
    private final AgentLocator agents;
    private final TransportSecurity security;
    private final Admission admission;
    private final OperatorEvents events;
    private final OperatorMetrics metrics;
    private final ConcurrentMap<String, ManagedChannel> channels = new ConcurrentHashMap<>();
    /** Resources (by uid) a task is handling: updates to them, mostly our own status writes, are skipped. */
    private final Set<String> handled = ConcurrentHashMap.newKeySet();
    private final ConcurrentMap<String, Start> waiting = new ConcurrentHashMap<>();
    private final ConcurrentMap<String, Future<?>> followers = new ConcurrentHashMap<>();
    /**
     * Bounded: a follower holds a thread for as long as its migration runs, and admission lets at most
     * maxPerCluster run (more only after a restart with a lower limit, when their followers queue here);
     * two more threads resolve, queue and cancel.
     */
    private final ExecutorService workers;
    private final ScheduledExecutorService retries = Executors.newSingleThreadScheduledExecutor(daemon("ferry-operator-retry"));
    private SharedIndexInformer<GenericKubernetesResource> informer;
    private SharedIndexInformer<GenericKubernetesResource> policyInformer;

    /**
     * {@code agentPort}: the agents' control port on each node (the DaemonSet's --control);
     * {@code security}: how to dial them (the operator's certificate, trusting the agents' CA).
     */
    public MigrationOperator(KubernetesClient client, int agentPort, TransportSecurity security) {
        this(client, agentPort, security, Settings.DEFAULT);
    }

    public MigrationOperator(KubernetesClient client, int agentPort, TransportSecurity security, Settings settings) {
        this.client = client;
        this.security = security;
        this.agents = new AgentLocator(client, agentPort);
        this.admission = new Admission(settings.maxPerNode(), settings.maxPerCluster());
        this.events = new OperatorEvents(client, settings.identity());
        this.workers = Executors.newFixedThreadPool(settings.maxPerCluster() + 2, daemon("ferry-operator"));
        Meter meter = settings.telemetry().getMeter("dev.ferry.k8s.operator");
        this.metrics = new OperatorMetrics(meter, admission, this::phases);
    }

    private static ThreadFactory daemon(String name) {
        return r -> {
            Thread t = new Thread(r, name);
            t.setDaemon(true);
            return t;
        };
    }

    /** Starts watching VirtualMachineMigration resources in every namespace, and MigrationPolicies. */
    public MigrationOperator start() {
        policyInformer = client.genericKubernetesResources(MigrationPolicies.CONTEXT).inform(new ResourceEventHandler<>() {
            @Override
            public void onAdd(GenericKubernetesResource p) {
                validatePolicy(p);
            }

            @Override
            public void onUpdate(GenericKubernetesResource old, GenericKubernetesResource p) {
                validatePolicy(p);
            }

            @Override
            public void onDelete(GenericKubernetesResource p, boolean finalStateUnknown) {}
        });
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
                gone(r.getMetadata().getUid());
            }
        });
        return this;
    }

    private void reconcile(GenericKubernetesResource r) {
        String uid = r.getMetadata().getUid();
        boolean finalizer = r.getMetadata().getFinalizers().contains(FINALIZER);
        if (r.getMetadata().getDeletionTimestamp() != null) {
            if (finalizer && handled.add(uid + "/delete")) {
                metrics.reconciled("deleted");
                submit(() -> finalizeDeletion(r));
            }
            return;
        }
        if (VirtualMachineMigrations.terminal(string(section(r, "status"), "phase"))) {
            if (finalizer && !handled.contains(uid)) {
                submit(() -> removeFinalizer(r)); // ended while no operator ran
            }
            return;
        }
        if (!handled.add(uid)) {
            return;
        }
        metrics.reconciled("started");
        submit(() -> {
            try {
                admit(r);
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.ERROR, "reconciling " + r.getMetadata().getName(), e);
                handled.remove(uid);
            }
        });
    }

    /** Resolves where and how the migration runs, then starts it or queues it under the limits. */
    private void admit(GenericKubernetesResource r) {
        String uid = r.getMetadata().getUid();
        if (!addFinalizer(r)) {
            handled.remove(uid);
            return;
        }
        Map<String, Object> spec = section(r, "spec");
        String sourceNode = string(section(r, "status"), "sourceNode");
        if (!sourceNode.isEmpty()) { // started before a restart: it runs, whatever the limits
            admission.resume(uid, sourceNode);
            String node = sourceNode;
            follower(uid, () -> follow(r, node));
            return;
        }
        CreateMigrationRequest request;
        try {
            sourceNode = string(spec, "sourceNode").isEmpty() ? findVm(string(spec, "vm")) : string(spec, "sourceNode");
            address(sourceNode);
            String destination = address(string(spec, "destinationNode"));
            List<GenericKubernetesResource> policies = client.genericKubernetesResources(MigrationPolicies.CONTEXT)
                    .list().getItems();
            Map<String, String> vmLabels = MigrationPolicies.selectsByVmLabels(policies)
                    ? vmLabels(sourceNode, string(spec, "vm")) : Map.of();
            Optional<MigrationPolicies.Match> policy = MigrationPolicies.select(policies, vmLabels,
                    labels(r.getMetadata().getLabels()), namespaceLabels(r.getMetadata().getNamespace()));
            if (policy.isPresent()) {
                Optional<String> refused = MigrationPolicies.refusal(policy.get().policy());
                if (refused.isPresent()) {
                    fail(r, "PolicyRefused", "MigrationPolicy " + policy.get().name() + " applies and is refused: "
                            + refused.get(), policy.get().name());
                    return;
                }
                spec = MigrationPolicies.effectiveSpec(spec, policy.get().policy());
            }
            request = CreateMigrationRequest.newBuilder().setMigrationId(VirtualMachineMigrations.migrationId(r))
                    .setMigration(Migration.newBuilder().setVm(string(spec, "vm")).setDestinationAddress(destination)
                            .setMode(VirtualMachineMigrations.mode(spec))
                            .setPolicy(VirtualMachineMigrations.policy(spec))).build();
            if (policy.isPresent() && !writePolicyName(r, policy.get().name())) {
                handled.remove(uid);
                return;
            }
        } catch (IllegalArgumentException e) {
            fail(r, "InvalidSpec", e.getMessage(), null);
            return;
        }
        waiting.put(uid, new Start(r, sourceNode, request));
        List<Admission.Ticket> now = admission.offer(uid, sourceNode, r.getMetadata().getCreationTimestamp());
        Optional<Admission.Wait> why = admission.why(uid);
        if (why.isPresent()) {
            metrics.reconciled("queued");
            Map<String, Object> s = new LinkedHashMap<>();
            s.put("phase", VirtualMachineMigrations.PENDING);
            s.put("message", why.get().message());
            writeStatus(r, s, why.get().reason());
            events.record(r, OperatorEvents.NORMAL, why.get().reason(), why.get().message());
        }
        startAll(now);
    }

    private void startAll(List<Admission.Ticket> admitted) {
        for (Admission.Ticket t : admitted) {
            Start s = waiting.remove(t.uid());
            if (s == null) { // deleted meanwhile
                startAll(admission.release(t.uid()));
                continue;
            }
            follower(t.uid(), () -> run(s));
        }
    }

    /** Creates the migration on the source node's agent if it does not have it yet, then follows it. */
    private void run(Start s) {
        GenericKubernetesResource r = s.resource();
        try {
            try {
                migrations(address(s.sourceNode())).createMigration(s.request());
            } catch (StatusRuntimeException e) {
                if (e.getStatus().getCode() != Status.Code.ALREADY_EXISTS) { // else: created before a restart
                    throw e;
                }
            }
            follow(r, s.sourceNode());
        } catch (StatusRuntimeException e) {
            if (!Thread.currentThread().isInterrupted()) {
                fail(r, "AgentRefused", "agent refused: " + e.getStatus().getCode() + ": " + e.getStatus().getDescription(),
                        null);
            }
        } catch (IllegalArgumentException e) {
            fail(r, "InvalidSpec", e.getMessage(), null);
        }
    }

    /** Mirrors WatchMigration into .status until the migration ends or the resource is gone. */
    private void follow(GenericKubernetesResource r, String sourceNode) {
        String uid = r.getMetadata().getUid();
        try {
            String name = "migrations/" + VirtualMachineMigrations.migrationId(r);
            String phase = "";
            while (!Thread.currentThread().isInterrupted()) {
                try {
                    Iterator<Migration> it = migrationsStreaming(address(sourceNode)).watchMigration(
                            WatchMigrationRequest.newBuilder().setName(name).build());
                    long written = 0;
                    while (it.hasNext()) {
                        Migration m = it.next();
                        long now = System.nanoTime();
                        boolean changed = !m.getPhase().name().equals(phase);
                        if (changed || now - written > STATUS_EVERY_MILLIS * 1_000_000) {
                            String reason = reason(m);
                            if (!writeStatus(r, VirtualMachineMigrations.status(sourceNode, m), reason)) {
                                return; // the resource is gone
                            }
                            if (changed) {
                                phaseEvent(r, m, reason);
                            }
                            phase = m.getPhase().name();
                            written = now;
                        }
                        if (VirtualMachineMigrations.terminal(phase)) {
                            removeFinalizer(r);
                            return;
                        }
                    }
                } catch (StatusRuntimeException e) {
                    if (Thread.currentThread().isInterrupted()) {
                        return; // the resource is being deleted
                    }
                    if (e.getStatus().getCode() == Status.Code.NOT_FOUND) {
                        fail(r, "AgentLost", "the agent on " + sourceNode + " no longer knows " + name
                                + " (restarted?); the VM's state there is what counts", null);
                        return;
                    }
                    LOG.log(System.Logger.Level.WARNING, "{0}: watching on {1}: {2}; retrying", name, sourceNode,
                            e.getStatus().getCode() + " " + e.getStatus().getDescription());
                } catch (IllegalArgumentException e) {
                    LOG.log(System.Logger.Level.WARNING, "{0}: {1}; retrying", name, e.getMessage());
                }
                try {
                    Thread.sleep(RETRY_MILLIS); // the agent may be restarting: back off, then watch again
                } catch (InterruptedException e) {
                    return;
                }
            }
        } finally {
            ended(uid);
        }
    }

    private static String reason(Migration m) {
        return switch (m.getPhase()) {
            case COMPLETED -> "Succeeded";
            case CANCELLED -> "Cancelled";
            case FAILED -> "MigrationFailed";
            default -> "Migrating";
        };
    }

    private void phaseEvent(GenericKubernetesResource r, Migration m, String reason) {
        String phase = m.getPhase().name();
        if (phase.equals("FAILED")) {
            events.record(r, OperatorEvents.WARNING, reason, dev.ferry.v1.MigrationErrors.summary(m));
        } else {
            events.record(r, OperatorEvents.NORMAL, reason, "phase " + phase + " (" + m.getName() + ")");
        }
    }

    /** Runs {@code task} on a worker; after close, does nothing (the next leader picks the work up). */
    private Future<?> submit(Runnable task) {
        try {
            return workers.submit(task);
        } catch (RejectedExecutionException e) {
            return CompletableFuture.completedFuture(null);
        }
    }

    private void follower(String uid, Runnable task) {
        Future<?> f = submit(task);
        followers.put(uid, f);
        if (f.isDone()) { // it ended before it was recorded
            followers.remove(uid, f);
        }
    }

    /** The migration no longer holds a slot: the next ones may start. */
    private void ended(String uid) {
        followers.remove(uid);
        handled.remove(uid);
        startAll(admission.release(uid));
    }

    private void gone(String uid) {
        Future<?> f = followers.remove(uid);
        if (f != null) {
            f.cancel(true);
        }
        waiting.remove(uid);
        handled.remove(uid);
        handled.remove(uid + "/delete");
        startAll(admission.release(uid));
    }

    /**
     * The resource is being deleted: cancel its migration on the agent if it still runs, and only then
     * stop following it, free its slot and remove the finalizer.
     */
    private void finalizeDeletion(GenericKubernetesResource stale) {
        String uid = stale.getMetadata().getUid();
        boolean admitted = followers.containsKey(uid);
        waiting.remove(uid); // a PENDING one never reached the agent: nothing to cancel
        GenericKubernetesResource r = get(stale).orElse(null);
        if (r == null) {
            gone(uid);
            return;
        }
        Map<String, Object> status = section(r, "status");
        String phase = string(status, "phase");
        String migration = string(status, "migration");
        if ((admitted || !migration.isEmpty()) && !VirtualMachineMigrations.terminal(phase)) {
            String name = migration.isEmpty() ? "migrations/" + VirtualMachineMigrations.migrationId(r) : migration;
            String node = string(status, "sourceNode").isEmpty() ? string(section(r, "spec"), "sourceNode")
                    : string(status, "sourceNode");
            try {
                migrations(address(node)).cancelMigration(CancelMigrationRequest.newBuilder().setName(name).build());
                events.record(r, OperatorEvents.NORMAL, "Cancelled", "deleted while " + phase + ": cancelled " + name
                        + " on " + node);
            } catch (StatusRuntimeException e) {
                Status.Code c = e.getStatus().getCode();
                if (c != Status.Code.NOT_FOUND && c != Status.Code.FAILED_PRECONDITION) {
                    // The agent may be restarting: keep the finalizer and try again.
                    events.record(r, OperatorEvents.WARNING, "CancelFailed", "cancelling " + name + " on " + node + ": "
                            + c + ": " + e.getStatus().getDescription() + "; retrying");
                    retry(r);
                    return;
                }
                events.record(r, OperatorEvents.NORMAL, "NotCancelled", name + " on " + node + ": " + c + ": "
                        + e.getStatus().getDescription());
            } catch (IllegalArgumentException e) {
                events.record(r, OperatorEvents.WARNING, "CancelFailed", e.getMessage() + "; retrying");
                retry(r);
                return;
            }
        }
        Future<?> f = followers.remove(uid);
        if (f != null) {
            f.cancel(true);
        }
        startAll(admission.release(uid));
        removeFinalizer(r);
        handled.remove(uid + "/delete");
    }

    private void retry(GenericKubernetesResource r) {
        try {
            retries.schedule(() -> submit(() -> finalizeDeletion(r)), RETRY_MILLIS, TimeUnit.MILLISECONDS);
        } catch (RejectedExecutionException e) {
            // closed: the next leader finds the finalizer and retries
        }
    }

    private void fail(GenericKubernetesResource r, String reason, String message, String policy) {
        metrics.reconciled("failed");
        Map<String, Object> s = VirtualMachineMigrations.failed(message);
        if (policy != null) {
            s.put("migrationPolicy", policy);
        }
        writeStatus(r, s, reason);
        events.record(r, OperatorEvents.WARNING, reason, message);
        removeFinalizer(r);
        ended(r.getMetadata().getUid());
    }

    /** The MigrationPolicy's Accepted condition, written when it changes. */
    private void validatePolicy(GenericKubernetesResource p) {
        submit(() -> {
            Optional<String> refused = MigrationPolicies.refusal(p);
            Long generation = p.getMetadata().getGeneration();
            Map<String, Object> accepted = Conditions.find(section(p, "status"), Conditions.ACCEPTED);
            String want = refused.isPresent() ? "False" : "True";
            if (want.equals(accepted.get("status")) && generation != null
                    && generation.equals(asLong(section(p, "status").get("observedGeneration")))) {
                return;
            }
            try {
                client.genericKubernetesResources(MigrationPolicies.CONTEXT).withName(p.getMetadata().getName())
                        .editStatus(x -> {
                            Map<String, Object> s = new LinkedHashMap<>(section(x, "status"));
                            s.put("conditions", Conditions.merge(s.get("conditions"), List.of(refused.isPresent()
                                    ? new Conditions.Condition(Conditions.ACCEPTED, false, "Invalid", refused.get())
                                    : new Conditions.Condition(Conditions.ACCEPTED, true, "Valid",
                                            "applies to the migrations its selectors match")),
                                    x.getMetadata().getGeneration(), Instant.now()));
                            if (x.getMetadata().getGeneration() != null) {
                                s.put("observedGeneration", x.getMetadata().getGeneration());
                            }
                            x.setAdditionalProperty("status", s);
                            return x;
                        });
                if (refused.isPresent()) {
                    events.record(p, OperatorEvents.WARNING, "PolicyRefused", refused.get());
                }
            } catch (KubernetesClientException e) {
                LOG.log(System.Logger.Level.WARNING, "status of MigrationPolicy {0}: {1}", p.getMetadata().getName(),
                        e.getMessage());
            }
        });
    }

    private static Long asLong(Object o) {
        return o instanceof Number n ? n.longValue() : null;
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

    /** Vm.labels of {@code vm} on {@code node}'s agent. */
    private Map<String, String> vmLabels(String node, String vm) {
        try {
            return VmServiceGrpc.newBlockingStub(channel(address(node))).withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS)
                    .getVm(GetVmRequest.newBuilder().setName(vm).build()).getLabelsMap();
        } catch (StatusRuntimeException e) {
            throw new IllegalArgumentException("cannot read the labels of " + vm + " on node " + node + " (a"
                    + " MigrationPolicy selects by them): " + e.getStatus().getCode() + " "
                    + e.getStatus().getDescription());
        }
    }

    private String address(String node) {
        return agents.controlAddress(node)
                .orElseThrow(() -> new IllegalArgumentException("node " + node + " has no Ferry agent address"));
    }

    private static Map<String, String> labels(Map<String, String> l) {
        return l == null ? Map.of() : l;
    }

    private Map<String, String> namespaceLabels(String namespace) {
        Namespace ns = client.namespaces().withName(namespace).get();
        return ns == null ? Map.of() : labels(ns.getMetadata().getLabels());
    }

    private Optional<GenericKubernetesResource> get(GenericKubernetesResource r) {
        return Optional.ofNullable(client.genericKubernetesResources(CONTEXT).inNamespace(r.getMetadata().getNamespace())
                .withName(r.getMetadata().getName()).get());
    }

    /** False if the resource is gone or being deleted. */
    private boolean addFinalizer(GenericKubernetesResource r) {
        try {
            GenericKubernetesResource now = get(r).orElse(null);
            if (now == null || now.getMetadata().getDeletionTimestamp() != null) {
                return false;
            }
            if (!now.getMetadata().getFinalizers().contains(FINALIZER)) {
                onConflictRetry(() -> client.genericKubernetesResources(CONTEXT)
                        .inNamespace(r.getMetadata().getNamespace()).withName(r.getMetadata().getName()).edit(x -> {
                            if (!x.getMetadata().getFinalizers().contains(FINALIZER)) {
                                x.getMetadata().getFinalizers().add(FINALIZER);
                            }
                            return x;
                        }));
            }
            return true;
        } catch (KubernetesClientException e) {
            if (e.getCode() == 404) {
                return false;
            }
            throw e;
        }
    }

    /**
     * Runs an edit (read, change, write with the read's resourceVersion) again when the write meets 409 Conflict:
     * another writer (the follower's status, the deletion's finalizer) changed the object in between. Without this a
     * lost race left the finalizer on a deleted resource for good.
     */
    static <T> T onConflictRetry(java.util.function.Supplier<T> edit) {
        for (int attempt = 1; ; attempt++) {
            try {
                return edit.get();
            } catch (KubernetesClientException e) {
                if (e.getCode() != 409 || attempt == CONFLICT_ATTEMPTS) {
                    throw e;
                }
            }
        }
    }

    private void removeFinalizer(GenericKubernetesResource r) {
        try {
            GenericKubernetesResource now = get(r).orElse(null);
            if (now == null || !now.getMetadata().getFinalizers().contains(FINALIZER)) {
                return;
            }
            onConflictRetry(() -> client.genericKubernetesResources(CONTEXT).inNamespace(r.getMetadata().getNamespace())
                    .withName(r.getMetadata().getName()).edit(x -> {
                        x.getMetadata().getFinalizers().remove(FINALIZER);
                        return x;
                    }));
        } catch (KubernetesClientException e) {
            if (e.getCode() != 404) {
                LOG.log(System.Logger.Level.WARNING, "finalizer of {0}: {1}", r.getMetadata().getName(), e.getMessage());
            }
        }
    }

    private boolean writePolicyName(GenericKubernetesResource r, String policy) {
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("migrationPolicy", policy);
        return editStatus(r, x -> {
            Map<String, Object> merged = new LinkedHashMap<>(section(x, "status"));
            merged.putAll(s);
            return merged;
        });
    }

    /**
     * Writes .status with its Running/Succeeded/Failed conditions for the phase (kept from the stored
     * object where unchanged) and observedGeneration. False if the resource no longer exists.
     */
    private boolean writeStatus(GenericKubernetesResource r, Map<String, Object> status, String reason) {
        return editStatus(r, x -> {
            Map<String, Object> previous = section(x, "status");
            Map<String, Object> s = new LinkedHashMap<>(status);
            Long generation = x.getMetadata().getGeneration();
            s.put("conditions", Conditions.merge(previous.get("conditions"), Conditions.forPhase(string(s, "phase"),
                    reason, string(s, "message").isEmpty() ? "phase " + string(s, "phase") : string(s, "message")),
                    generation, Instant.now()));
            if (generation != null) {
                s.put("observedGeneration", generation);
            }
            if (!s.containsKey("migrationPolicy") && previous.containsKey("migrationPolicy")) {
                s.put("migrationPolicy", previous.get("migrationPolicy"));
            }
            return s;
        });
    }

    private boolean editStatus(GenericKubernetesResource r,
            java.util.function.Function<GenericKubernetesResource, Map<String, Object>> status) {
        try {
            return onConflictRetry(() -> client.genericKubernetesResources(CONTEXT)
                    .inNamespace(r.getMetadata().getNamespace()).withName(r.getMetadata().getName()).editStatus(x -> {
                        x.setAdditionalProperty("status", status.apply(x));
                        return x;
                    })) != null;
        } catch (KubernetesClientException e) {
            if (e.getCode() == 404) {
                return false;
            }
            LOG.log(System.Logger.Level.WARNING, "status of {0}: {1}", r.getMetadata().getName(), e.getMessage());
            return true;
        }
    }

    /** The watched resources by status.phase ("" before the operator wrote one), for the metrics. */
    private Map<String, Long> phases() {
        Map<String, Long> out = new TreeMap<>();
        if (informer != null) {
            for (GenericKubernetesResource r : informer.getStore().list()) {
                out.merge(string(section(r, "status"), "phase"), 1L, Long::sum);
            }
        }
        return out;
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
        if (policyInformer != null) {
            policyInformer.close();
        }
        retries.shutdownNow();
        workers.shutdownNow();
        metrics.close();
        channels.values().forEach(ManagedChannel::shutdownNow);
    }
}
