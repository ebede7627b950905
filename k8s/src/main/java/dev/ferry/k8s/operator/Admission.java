package dev.ferry.k8s.operator;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Limits on concurrent migrations, as KubeVirt has them: at most {@code perNode} outbound from one source
 * node and {@code perCluster} in all. The rest wait in creation order (creationTimestamp, then arrival); a
 * waiting migration whose node is full does not hold back a younger one from another node.
 * Not thread-safe on its own: every method is synchronized.
 */
final class Admission {
    /** KubeVirt's parallelOutboundMigrationsPerNode and parallelMigrationsPerCluster defaults. */
    static final int DEFAULT_PER_NODE = 2;
    static final int DEFAULT_PER_CLUSTER = 5;

    /** A migration asking to run: its resource uid, source node and creationTimestamp (RFC 3339). */
    record Ticket(String uid, String node, String created, long arrival) {}

    /** Why a ticket waits. */
    record Wait(String reason, String message) {}

    private final int perNode;
    private final int perCluster;
    private final Map<String, Ticket> running = new HashMap<>();
    private final Map<String, Ticket> waiting = new HashMap<>();
    private long arrivals;

    Admission(int perNode, int perCluster) {
        if (perNode < 1 || perCluster < 1) {
            throw new IllegalArgumentException("migration limits must be at least 1 (per node " + perNode
                    + ", per cluster " + perCluster + ")");
        }
        this.perNode = perNode;
        this.perCluster = perCluster;
    }

    /** Queues a migration; returns the tickets that may start now (this one, or none). */
    synchronized List<Ticket> offer(String uid, String node, String created) {
        if (!running.containsKey(uid) && !waiting.containsKey(uid)) {
            waiting.put(uid, new Ticket(uid, node, created == null ? "" : created, arrivals++));
        }
        return pump();
    }

    /** A migration already running on the agents (found after a restart): counted, whatever the limits. */
    synchronized void resume(String uid, String node) {
        waiting.remove(uid);
        running.putIfAbsent(uid, new Ticket(uid, node, "", arrivals++));
    }

    /** A migration ended or its resource is gone; returns the tickets that may start now. */
    synchronized List<Ticket> release(String uid) {
        running.remove(uid);
        waiting.remove(uid);
        return pump();
    }

    /** Why {@code uid} waits, or empty if it does not. */
    synchronized Optional<Wait> why(String uid) {
        Ticket t = waiting.get(uid);
        if (t == null) {
            return Optional.empty();
        }
        if (running.size() >= perCluster) {
            return Optional.of(new Wait("ClusterLimitReached", "waiting: " + running.size()
                    + " migrations run in the cluster (limit " + perCluster + ")"));
        }
        long onNode = onNode(t.node());
        if (onNode >= perNode) {
            return Optional.of(new Wait("NodeLimitReached", "waiting: " + onNode + " migrations run out of node "
                    + t.node() + " (limit " + perNode + ")"));
        }
        return Optional.of(new Wait("Queued", "waiting behind older migrations"));
    }

    synchronized int waiting() {
        return waiting.size();
    }

    synchronized int running() {
        return running.size();
    }

    private long onNode(String node) {
        return running.values().stream().filter(t -> t.node().equals(node)).count();
    }

    private List<Ticket> pump() {
        List<Ticket> queue = new ArrayList<>(waiting.values());
        queue.sort(Comparator.comparing(Ticket::created).thenComparingLong(Ticket::arrival));
        List<Ticket> admitted = new ArrayList<>();
        for (Ticket t : queue) {
            if (running.size() >= perCluster) {
                break;
            }
            if (onNode(t.node()) < perNode) {
                waiting.remove(t.uid());
                running.put(t.uid(), t);
                admitted.add(t);
            }
        }
        return admitted;
    }
}
