package dev.ferry.k8s.operator;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.extended.leaderelection.LeaderCallbacks;
import io.fabric8.kubernetes.client.extended.leaderelection.LeaderElectionConfigBuilder;
import io.fabric8.kubernetes.client.extended.leaderelection.resourcelock.LeaseLock;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.function.Supplier;

/**
 * One replica of the operator: it runs a MigrationOperator only while it holds the Lease
 * {@code namespace/name}, so two replicas never act on the same resource twice; the others stay idle
 * until the leader stops renewing (or releases the Lease on close) and one of them takes over. Losing
 * the Lease closes the operator at once and calls {@code onLost}.
 */
public final class OperatorReplica implements AutoCloseable {
    /** client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry. */
    public record Timing(Duration lease, Duration renewDeadline, Duration retry) {
        public static final Timing DEFAULT = new Timing(Duration.ofSeconds(15), Duration.ofSeconds(10), Duration.ofSeconds(2));
    }

    private static final System.Logger LOG = System.getLogger(OperatorReplica.class.getName());
    private final String identity;
    private final Supplier<MigrationOperator> operators;
    private final Runnable onLost;
    private final CompletableFuture<?> election;
    private volatile MigrationOperator operator;
    private volatile boolean closing;

    public OperatorReplica(KubernetesClient client, String namespace, String name, String identity, Timing timing,
            Supplier<MigrationOperator> operators, Runnable onLost) {
        this.identity = identity;
        this.operators = operators;
        this.onLost = onLost;
        this.election = client.leaderElector().withConfig(new LeaderElectionConfigBuilder()
                .withName(name).withLock(new LeaseLock(namespace, name, identity))
                .withLeaseDuration(timing.lease()).withRenewDeadline(timing.renewDeadline()).withRetryPeriod(timing.retry())
                .withReleaseOnCancel(true)
                .withLeaderCallbacks(new LeaderCallbacks(this::lead, this::stopLeading,
                        leader -> LOG.log(System.Logger.Level.INFO, "{0}: the leader is {1}", identity, leader)))
                .build()).build().start();
    }

    private synchronized void lead() {
        if (closing || operator != null) {
            return;
        }
        LOG.log(System.Logger.Level.INFO, "{0}: leading", identity);
        operator = operators.get().start();
    }

    private void stopLeading() {
        synchronized (this) {
            if (operator != null) {
                operator.close();
                operator = null;
            }
        }
        if (!closing) {
            LOG.log(System.Logger.Level.WARNING, "{0}: lost the lease; stopped acting", identity);
            onLost.run();
        }
    }

    /** Whether this replica's operator runs now. */
    public boolean leading() {
        return operator != null;
    }

    public String identity() {
        return identity;
    }

    /** Stops acting and releases the Lease, so another replica takes over without waiting for it to expire. */
    @Override
    public void close() {
        closing = true;
        synchronized (this) { // stop acting before the Lease goes to another replica
            if (operator != null) {
                operator.close();
                operator = null;
            }
        }
        election.cancel(true);
    }
}
