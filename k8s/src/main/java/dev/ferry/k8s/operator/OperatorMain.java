package dev.ferry.k8s.operator;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.exporter.prometheus.PrometheusHttpServer;
import io.opentelemetry.sdk.OpenTelemetrySdk;
import io.opentelemetry.sdk.metrics.SdkMeterProvider;
import java.net.InetAddress;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code ferry-operator}: runs the migration operator against the cluster it finds (in-cluster or kubeconfig). */
@Command(name = "ferry-operator", mixinStandardHelpOptions = true,
        description = "Turns VirtualMachineMigration resources into migrations between Ferry agents.")
public final class OperatorMain implements Callable<Integer> {
    @Option(names = "--agent-port", defaultValue = "7001", description = "The agents' control port on each node (default ${DEFAULT-VALUE}).")
    int agentPort;

    @Option(names = "--max-migrations-per-node", defaultValue = "${env:FERRY_MAX_MIGRATIONS_PER_NODE:-2}",
            description = "Most concurrent migrations out of one node; more wait as PENDING (default ${DEFAULT-VALUE}, env FERRY_MAX_MIGRATIONS_PER_NODE).")
    int maxPerNode;

    @Option(names = "--max-migrations", defaultValue = "${env:FERRY_MAX_MIGRATIONS:-5}",
            description = "Most concurrent migrations in the cluster; more wait as PENDING (default ${DEFAULT-VALUE}, env FERRY_MAX_MIGRATIONS).")
    int maxPerCluster;

    @Option(names = "--metrics", description = "Serve the operator's Prometheus metrics (OpenTelemetry) at http://HOST:PORT/metrics.")
    String metrics;

    @Option(names = "--leader-elect", defaultValue = "true", negatable = true, fallbackValue = "true",
            description = "Act only while holding the Lease, so replicas never act twice (default ${DEFAULT-VALUE}).")
    boolean leaderElect;

    @Option(names = "--lease-namespace", defaultValue = "${env:POD_NAMESPACE:-ferry-system}",
            description = "Namespace of the leader-election Lease (default ${DEFAULT-VALUE}, env POD_NAMESPACE).")
    String leaseNamespace;

    @Option(names = "--lease-name", defaultValue = "ferry-operator", description = "Name of the Lease (default ${DEFAULT-VALUE}).")
    String leaseName;

    @Option(names = "--identity", defaultValue = "${env:POD_NAME}",
            description = "This replica's name in the Lease and in Events (default: env POD_NAME, else the host name).")
    String identity;

    @picocli.CommandLine.Mixin
    dev.ferry.security.TlsOptions tls = new dev.ferry.security.TlsOptions();

    /** The agents' control port this operator dials. */
    public int agentPort() {
        return agentPort;
    }

    public boolean leaderElect() {
        return leaderElect;
    }

    @Override
    public Integer call() throws InterruptedException, java.io.IOException {
        dev.ferry.security.TransportSecurity security;
        if (maxPerNode < 1 || maxPerCluster < 1) {
            System.err.println("ferry-operator: --max-migrations-per-node and --max-migrations must be at least 1");
            return 2;
        }
        try {
            security = tls.open();
        } catch (IllegalArgumentException | java.io.IOException e) { // one line, exit 2, as the ferry command does
            System.err.println("ferry-operator: " + e.getMessage());
            return 2;
        }
        OpenTelemetry telemetry = OpenTelemetry.noop();
        if (metrics != null) {
            int colon = metrics.lastIndexOf(':');
            if (colon < 0) {
                System.err.println("ferry-operator: --metrics wants HOST:PORT, not " + metrics);
                return 2;
            }
            telemetry = OpenTelemetrySdk.builder().setMeterProvider(SdkMeterProvider.builder()
                    .registerMetricReader(PrometheusHttpServer.builder().setHost(metrics.substring(0, colon))
                            .setPort(Integer.parseInt(metrics.substring(colon + 1))).build()).build()).build();
        }
        String me = identity == null || identity.isEmpty() ? InetAddress.getLocalHost().getHostName() : identity;
        MigrationOperator.Settings settings = new MigrationOperator.Settings(maxPerNode, maxPerCluster, me, telemetry);
        KubernetesClient client = new KubernetesClientBuilder().build();
        CountDownLatch stop = new CountDownLatch(1);
        AtomicBoolean lost = new AtomicBoolean();
        AutoCloseable running;
        if (leaderElect) {
            running = new OperatorReplica(client, leaseNamespace, leaseName, me, OperatorReplica.Timing.DEFAULT,
                    () -> new MigrationOperator(client, agentPort, security, settings), () -> {
                        lost.set(true); // exit, as client-go's leader election does: the pod restarts clean
                        stop.countDown();
                    });
        } else {
            running = new MigrationOperator(client, agentPort, security, settings).start();
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                running.close();
            } catch (Exception e) {
                System.err.println("ferry-operator: " + e.getMessage());
            }
            client.close();
            stop.countDown();
        }, "operator-shutdown"));
        stop.await();
        return lost.get() ? 1 : 0;
    }

    public static void main(String[] args) {
        System.exit(new CommandLine(new OperatorMain()).execute(args));
    }
}
