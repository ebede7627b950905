package dev.ferry.k8s.operator;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code ferry-operator}: runs the migration operator against the cluster it finds (in-cluster or kubeconfig). */
@Command(name = "ferry-operator", mixinStandardHelpOptions = true,
        description = "Turns VirtualMachineMigration resources into migrations between Ferry agents.")
public final class OperatorMain implements Callable<Integer> {
    @Option(names = "--agent-port", defaultValue = "7001", description = "The agents' control port on each node (default ${DEFAULT-VALUE}).")
    int agentPort;

    @picocli.CommandLine.Mixin
    dev.ferry.security.TlsOptions tls = new dev.ferry.security.TlsOptions();

    /** The agents' control port this operator dials. */
    public int agentPort() {
        return agentPort;
    }

    @Override
    public Integer call() throws InterruptedException, java.io.IOException {
        dev.ferry.security.TransportSecurity security;
        try {
            security = tls.open();
        } catch (IllegalArgumentException | java.io.IOException e) { // one line, exit 2, as the ferry command does
            System.err.println("ferry-operator: " + e.getMessage());
            return 2;
        }
        KubernetesClient client = new KubernetesClientBuilder().build();
        MigrationOperator operator = new MigrationOperator(client, agentPort, security).start();
        CountDownLatch stop = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            operator.close();
            client.close();
            stop.countDown();
        }, "operator-shutdown"));
        stop.await();
        return 0;
    }

    public static void main(String[] args) {
        System.exit(new CommandLine(new OperatorMain()).execute(args));
    }
}
