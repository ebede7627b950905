package dev.ferry.it;

import com.google.protobuf.Empty;
import dev.ferry.dataplane.MemoryPageWriter;
import dev.ferry.dataplane.PageTransferServer;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.PageHashes;
import dev.ferry.v1.AbortIncomingMigrationRequest;
import dev.ferry.v1.CompleteIncomingMigrationRequest;
import dev.ferry.v1.CompleteIncomingMigrationResponse;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.NegotiateMigrationRequest;
import dev.ferry.v1.NegotiateMigrationResponse;
import dev.ferry.v1.TransferDeviceStateRequest;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * A destination agent stand-in for tests that must hold a migration in one phase: it accepts the
 * source's proposal and its pages like a real destination (real page-transfer service into real
 * memory), but NegotiateMigration and TransferDeviceState wait until the test lets them go.
 */
final class FakeDestination implements AutoCloseable {
    final CountDownLatch negotiateEntered = new CountDownLatch(1);
    final CountDownLatch releaseNegotiate = new CountDownLatch(1);
    final CountDownLatch deviceStateEntered = new CountDownLatch(1);
    final CountDownLatch releaseDeviceState = new CountDownLatch(1);
    final CountDownLatch aborted = new CountDownLatch(1);
    volatile boolean completeCalled;

    private final Server control;
    private final Server data;
    private GuestMemory memory;
    private MemoryPageWriter writer;

    FakeDestination() throws IOException {
        // It stands in for an agent: the source only talks to a peer with an agent's certificate.
        dev.ferry.security.TransportSecurity tls = dev.ferry.security.TransportSecurity.mutualTls(Agents.files("agent"));
        control = tls.serverBuilder(new InetSocketAddress("127.0.0.1", 0))
                .addService(new MigrationServiceGrpc.MigrationServiceImplBase() {
                    @Override
                    public void negotiateMigration(NegotiateMigrationRequest req, StreamObserver<NegotiateMigrationResponse> out) {
                        negotiateEntered.countDown();
                        if (!await(releaseNegotiate, out)) {
                            return;
                        }
                        synchronized (FakeDestination.this) {
                            long bytes = req.getProposed().getMemoryRegionsList().stream().mapToLong(r -> r.getSizeBytes()).sum();
                            memory = GuestMemory.allocate(bytes, req.getProposed().getMemoryRegionsCount());
                            writer = new MemoryPageWriter(memory, new PageHashes(memory));
                        }
                        // Without DEVICE_STATE_AT_SWITCHOVER, so the device state comes by TransferDeviceState,
                        // a call the test can hold; without LZ4_PAGE_COMPRESSION, which its writer refuses (a
                        // source whose stream waited on the link would try LZ4 and fail the round).
                        dev.ferry.v1.MigrationConfig.Builder accepted = req.getProposed().toBuilder().clearFeatures();
                        req.getProposed().getFeaturesList().stream()
                                .filter(f -> f != dev.ferry.v1.MigrationConfig.Feature.DEVICE_STATE_AT_SWITCHOVER
                                        && f != dev.ferry.v1.MigrationConfig.Feature.LZ4_PAGE_COMPRESSION)
                                .forEach(accepted::addFeatures);
                        out.onNext(NegotiateMigrationResponse.newBuilder().setDestinationVm("vms/fake")
                                .setAccepted(accepted).addDataPlaneAddresses(dataAddress())
                                .setSessionToken("fake-token").build());
                        out.onCompleted();
                    }

                    @Override
                    public void transferDeviceState(TransferDeviceStateRequest req, StreamObserver<Empty> out) {
                        deviceStateEntered.countDown();
                        if (await(releaseDeviceState, out)) {
                            out.onNext(Empty.getDefaultInstance());
                            out.onCompleted();
                        }
                    }

                    @Override
                    public void completeIncomingMigration(CompleteIncomingMigrationRequest req,
                            StreamObserver<CompleteIncomingMigrationResponse> out) {
                        completeCalled = true;
                        out.onError(Status.FAILED_PRECONDITION.withDescription("fake destination never resumes").asRuntimeException());
                    }

                    @Override
                    public void abortIncomingMigration(AbortIncomingMigrationRequest req, StreamObserver<Empty> out) {
                        aborted.countDown();
                        out.onNext(Empty.getDefaultInstance());
                        out.onCompleted();
                    }
                }).build().start();
        data = tls.serverBuilder(new InetSocketAddress("127.0.0.1", 0))
                .addService(PageTransferServer.service(t -> {
                    synchronized (FakeDestination.this) {
                        return "fake-token".equals(t) && writer != null ? Optional.of(writer) : Optional.empty();
                    }
                })).build().start();
    }

    private static boolean await(CountDownLatch l, StreamObserver<?> out) {
        try {
            if (l.await(60, TimeUnit.SECONDS)) {
                return true;
            }
            out.onError(Status.DEADLINE_EXCEEDED.withDescription("test never released the call").asRuntimeException());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            out.onError(Status.CANCELLED.asRuntimeException());
        }
        return false;
    }

    String controlAddress() {
        return "127.0.0.1:" + control.getPort();
    }

    String dataAddress() {
        return "127.0.0.1:" + data.getPort();
    }

    @Override
    public synchronized void close() throws InterruptedException {
        releaseNegotiate.countDown();
        releaseDeviceState.countDown();
        control.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        data.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        if (writer != null) {
            writer.close();
        }
        if (memory != null) {
            memory.close();
        }
    }
}
