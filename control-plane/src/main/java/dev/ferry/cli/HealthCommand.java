package dev.ferry.cli;

import dev.ferry.security.TlsOptions;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code ferry health}: one gRPC health check over the agent's mutual TLS. The kubelet's own gRPC probe
 * speaks plaintext only, so the DaemonSet probes with this command instead.
 */
@Command(name = "health", mixinStandardHelpOptions = true,
        description = "Check an agent listener's gRPC health: exit 0 if SERVING, 1 if not, 2 if it cannot be asked.")
final class HealthCommand implements Callable<Integer> {
    @Option(names = "--agent", required = true, description = "Listener address HOST:PORT (control, data or pager).")
    String agent;

    @Option(names = "--service", defaultValue = "", description = "Service to ask about (default: the whole listener).")
    String service;

    @Option(names = "--timeout", defaultValue = "5s", description = "Give up after this long (default ${DEFAULT-VALUE}).")
    String timeout;

    @Mixin
    TlsOptions tls = new TlsOptions();

    @Override
    public Integer call() throws Exception {
        ManagedChannel ch = tls.open().channelBuilder(agent).build();
        try {
            ServingStatus s = HealthGrpc.newBlockingStub(ch).withDeadlineAfter(Durations.parse(timeout).toMillis(), TimeUnit.MILLISECONDS)
                    .check(HealthCheckRequest.newBuilder().setService(service).build()).getStatus();
            System.out.println(s);
            return s == ServingStatus.SERVING ? 0 : 1;
        } catch (StatusRuntimeException e) {
            System.err.println("ferry: " + agent + ": " + e.getStatus().getCode() + ": " + e.getStatus().getDescription());
            return 2;
        } finally {
            ch.shutdownNow();
        }
    }
}
