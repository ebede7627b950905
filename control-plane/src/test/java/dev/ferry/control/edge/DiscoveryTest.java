package dev.ferry.control.edge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.Backends;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.migration.MigrationServices;
import io.grpc.ManagedChannel;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.reflection.v1alpha.ServerReflectionGrpc;
import io.grpc.reflection.v1alpha.ServerReflectionRequest;
import io.grpc.reflection.v1alpha.ServerReflectionResponse;
import io.grpc.reflection.v1alpha.ServiceResponse;
import io.grpc.stub.StreamObserver;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** Health (NOT_SERVING until ready) and reflection v1 and v1alpha on all three listeners of a real agent. */
class DiscoveryTest {
    private static final Set<String> COMMON = Set.of("grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection");

    @Test
    void everyListenerServesHealthAndBothReflectionVersionsAndTurnsServingOnlyWhenReady() throws Exception {
        InetSocketAddress any = new InetSocketAddress("127.0.0.1", 0);
        try (Agent agent = Agent.start("discovery", any, any, line -> { }, Backends.open(Backends.Choice.AUTO),
                MigrationServices::new)) {
            List<String> addresses = List.of(agent.controlAddress(), agent.dataListenAddress(),
                    agent.pagerListenAddress());
            List<Set<String>> expected = List.of(union("ferry.v1.VmService", "ferry.v1.MigrationService"),
                    union("ferry.v1.PageTransferService"), union("ferry.v1.PostcopyPagerService"));
            for (int i = 0; i < 3; i++) {
                ManagedChannel ch = NettyChannelBuilder.forTarget(addresses.get(i)).usePlaintext().build();
                try {
                    assertEquals(ServingStatus.NOT_SERVING, health(ch), "before ready(): " + addresses.get(i));
                    assertEquals(expected.get(i), v1alphaServices(ch), "v1alpha on " + addresses.get(i));
                } finally {
                    ch.shutdownNow();
                }
            }
            agent.ready();
            for (String a : addresses) {
                ManagedChannel ch = NettyChannelBuilder.forTarget(a).usePlaintext().build();
                try {
                    assertEquals(ServingStatus.SERVING, health(ch), "after ready(): " + a);
                } finally {
                    ch.shutdownNow();
                }
            }
        }
    }

    private static Set<String> union(String... services) {
        Set<String> s = new TreeSet<>(COMMON);
        s.addAll(List.of(services));
        return s;
    }

    private static ServingStatus health(ManagedChannel ch) {
        return HealthGrpc.newBlockingStub(ch).withDeadlineAfter(30, TimeUnit.SECONDS)
                .check(HealthCheckRequest.getDefaultInstance()).getStatus();
    }

    @SuppressWarnings("deprecation") // v1alpha on purpose: older clients speak only it
    private static Set<String> v1alphaServices(ManagedChannel ch) throws Exception {
        CompletableFuture<ServerReflectionResponse> answer = new CompletableFuture<>();
        StreamObserver<ServerReflectionRequest> req = ServerReflectionGrpc.newStub(ch)
                .withDeadlineAfter(30, TimeUnit.SECONDS).serverReflectionInfo(new StreamObserver<>() {
                    @Override
                    public void onNext(ServerReflectionResponse r) {
                        answer.complete(r);
                    }

                    @Override
                    public void onError(Throwable t) {
                        answer.completeExceptionally(t);
                    }

                    @Override
                    public void onCompleted() {
                        answer.completeExceptionally(new AssertionError("no answer"));
                    }
                });
        req.onNext(ServerReflectionRequest.newBuilder().setListServices("").build());
        ServerReflectionResponse r = answer.get(30, TimeUnit.SECONDS);
        req.onCompleted();
        Set<String> names = new TreeSet<>();
        for (ServiceResponse s : r.getListServicesResponse().getServiceList()) {
            names.add(s.getName());
        }
        assertTrue(r.hasListServicesResponse(), r.toString());
        return names;
    }
}
