package dev.ferry.control.client;

import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.VmServiceGrpc;
import io.grpc.ManagedChannelBuilder;
import io.grpc.MethodDescriptor;
import java.util.List;
import java.util.Map;

/**
 * Retries of the agent's read-only calls on UNAVAILABLE, for every client of the control listener (CLI, demo,
 * tests, the source dialling the destination). A connection can close under a call that had already left the
 * client (an agent's idle or age limit, a reset), and gRPC retries transparently only calls that never left; a
 * read is safe to send again. Calls that change something are never retried here: their callers decide.
 */
public final class ReadRetries {
    private static final List<MethodDescriptor<?, ?>> READS = List.of(
            VmServiceGrpc.getGetVmMethod(), VmServiceGrpc.getListVmsMethod(),
            MigrationServiceGrpc.getGetMigrationMethod(), MigrationServiceGrpc.getListMigrationsMethod(),
            MigrationServiceGrpc.getGetMigrationLimitsMethod());

    private ReadRetries() {}

    /** {@code b} with the retry policy for the reads; numbers are doubles, as gRPC's service-config parser wants. */
    public static <T extends ManagedChannelBuilder<T>> T apply(T b) {
        List<Map<String, Object>> names = READS.stream().map(m -> Map.<String, Object>of(
                "service", m.getServiceName(), "method", m.getBareMethodName())).toList();
        Map<String, Object> retry = Map.of("maxAttempts", 4.0, "initialBackoff", "0.1s", "maxBackoff", "1s",
                "backoffMultiplier", 2.0, "retryableStatusCodes", List.of("UNAVAILABLE"));
        return b.defaultServiceConfig(Map.of("methodConfig", List.of(Map.of("name", names, "retryPolicy", retry))))
                .enableRetry();
    }
}
