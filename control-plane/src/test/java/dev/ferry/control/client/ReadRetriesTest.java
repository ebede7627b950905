package dev.ferry.control.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.ListVmsRequest;
import dev.ferry.v1.ListVmsResponse;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** A read that meets UNAVAILABLE is sent again; a call that changes something is not. */
class ReadRetriesTest {
    @Test
    void readsAreRetriedOnUnavailableAndWritesAreNot() throws Exception {
        AtomicInteger lists = new AtomicInteger();
        AtomicInteger creates = new AtomicInteger();
        VmServiceGrpc.VmServiceImplBase flaky = new VmServiceGrpc.VmServiceImplBase() {
            @Override
            public void listVms(ListVmsRequest request, StreamObserver<ListVmsResponse> out) {
                if (lists.incrementAndGet() < 3) {
                    out.onError(Status.UNAVAILABLE.withDescription("connection closed").asRuntimeException());
                    return;
                }
                out.onNext(ListVmsResponse.newBuilder().addVms(Vm.newBuilder().setName("vms/a")).build());
                out.onCompleted();
            }

            @Override
            public void createVm(CreateVmRequest request, StreamObserver<Vm> out) {
                creates.incrementAndGet();
                out.onError(Status.UNAVAILABLE.withDescription("connection closed").asRuntimeException());
            }
        };
        String name = InProcessServerBuilder.generateName();
        Server server = InProcessServerBuilder.forName(name).addService(flaky).build().start();
        ManagedChannel channel = ReadRetries.apply(InProcessChannelBuilder.forName(name)).build();
        try {
            VmServiceGrpc.VmServiceBlockingStub vms = VmServiceGrpc.newBlockingStub(channel)
                    .withDeadlineAfter(30, TimeUnit.SECONDS);
            assertEquals("vms/a", vms.listVms(ListVmsRequest.getDefaultInstance()).getVms(0).getName());
            assertEquals(3, lists.get());
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
                    () -> vms.createVm(CreateVmRequest.getDefaultInstance()));
            assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
            assertEquals(1, creates.get());
        } finally {
            channel.shutdownNow();
            server.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
        }
    }
}
