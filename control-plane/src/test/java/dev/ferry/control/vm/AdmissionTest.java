package dev.ferry.control.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.backends.Backends;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.migration.MigrationServices;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.DeleteVmRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WorkloadSpec;
import dev.ferry.vm.Backend;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.net.InetSocketAddress;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** --max-vms, --max-guest-memory and MemAvailable refuse a VM with RESOURCE_EXHAUSTED before it is allocated. */
class AdmissionTest {
    private static final long MIB = 1 << 20;
    private static final long GIB = 1L << 30;

    private static CreateVmRequest vm(String id, long memory) {
        return CreateVmRequest.newBuilder().setVmId(id).setVm(Vm.newBuilder().setVcpuCount(1).setMemoryBytes(memory)
                .setWorkload(WorkloadSpec.newBuilder().setWorkingSetBytes(8 * MIB))).build();
    }

    private interface Body {
        void run(VmServiceGrpc.VmServiceBlockingStub stub, VmRegistry vms) throws Exception;
    }

    private static void withVmService(VmRegistry vms, Backends backends, Body body) throws Exception {
        String name = InProcessServerBuilder.generateName();
        Server server = InProcessServerBuilder.forName(name).addService(new VmServiceImpl(vms, backends, l -> { }))
                .build().start();
        ManagedChannel ch = InProcessChannelBuilder.forName(name).build();
        try {
            body.run(VmServiceGrpc.newBlockingStub(ch).withDeadlineAfter(120, TimeUnit.SECONDS), vms);
        } finally {
            ch.shutdownNow();
            server.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
            vms.close();
        }
    }

    @ParameterizedTest(name = "on {0}")
    @EnumSource(Backend.class)
    void maxVmsAndMaxGuestMemoryRefuseBeforeAllocating(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        VmRegistry registry = new VmRegistry(new GuestAdmission.Limits(1, 128 * MIB), HostMemory.of(64 * GIB, 64 * GIB));
        withVmService(registry, Backends.open(Backends.Choice.valueOf(backend.name())), (stub, vms) -> {
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> stub.createVm(vm("big", 256 * MIB)));
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
            String d = e.getStatus().getDescription();
            assertTrue(d.contains("asks 256.0 MiB") && d.contains("128.0 MiB is left") && d.contains("--max-guest-memory"),
                    d);
            assertTrue(vms.list().isEmpty(), "nothing allocated");

            assertEquals(Vm.State.RUNNING, stub.createVm(vm("first", 64 * MIB)).getState());
            e = assertThrows(StatusRuntimeException.class, () -> stub.createVm(vm("second", 64 * MIB)));
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
            assertTrue(e.getStatus().getDescription().contains("--max-vms is 1"), e.getStatus().getDescription());
            assertEquals(1, vms.list().size());

            stub.deleteVm(DeleteVmRequest.newBuilder().setName("vms/first").build());
            assertEquals(Vm.State.RUNNING, stub.createVm(vm("second", 64 * MIB)).getState(), "the slot was released");
        });
    }

    @Test
    void aVmLargerThanTheHostHasAvailableIsRefused() throws Exception {
        // 1 GiB available, 4 GiB total: a headroom of 512 MiB leaves 512 MiB for guests.
        VmRegistry registry = new VmRegistry(GuestAdmission.Limits.DEFAULT, HostMemory.of(GIB, 4 * GIB));
        withVmService(registry, Backends.open(Backends.Choice.AUTO), (stub, vms) -> {
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> stub.createVm(vm("web", GIB)));
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
            String d = e.getStatus().getDescription();
            assertTrue(d.contains("asks 1.0 GiB") && d.contains("512.0 MiB available"), d);
            assertTrue(vms.list().isEmpty());
        });
    }

    @ParameterizedTest(name = "on {0}")
    @EnumSource(Backend.class)
    void aDestinationWithoutRoomRefusesTheNegotiationAndTheSourceKeepsRunning(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        InetSocketAddress any = new InetSocketAddress("127.0.0.1", 0);
        try (Agent src = Agent.start("adm-src", any, any, any, l -> { }, Backends.open(Backends.Choice.valueOf(
                        backend.name())), MigrationServices::new, GuestAdmission.Limits.DEFAULT);
                Agent dst = Agent.start("adm-dst", any, any, any, l -> { }, Backends.open(Backends.Choice.valueOf(
                        backend.name())), MigrationServices::new, new GuestAdmission.Limits(4, 32 * MIB))) {
            ManagedChannel s = NettyChannelBuilder.forTarget(src.controlAddress()).usePlaintext().build();
            try {
                var vms = VmServiceGrpc.newBlockingStub(s).withDeadlineAfter(120, TimeUnit.SECONDS);
                String name = vms.createVm(vm("adm", 64 * MIB)).getName();
                var migrations = MigrationServiceGrpc.newBlockingStub(s).withDeadlineAfter(120, TimeUnit.SECONDS);
                StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> migrations.createMigration(
                        CreateMigrationRequest.newBuilder().setMigrationId("adm").setMigration(Migration.newBuilder()
                                .setVm(name).setDestinationAddress(dst.controlAddress())).build()));
                assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode(), e.getStatus().toString());
                assertTrue(e.getStatus().getDescription().contains("asks 64.0 MiB"), e.getStatus().getDescription());
                assertTrue(dst.vms().list().isEmpty(), "the destination allocated nothing");
                assertEquals(Vm.State.RUNNING, vms.getVm(GetVmRequest.newBuilder().setName(name).build()).getState());
                assertEquals("", vms.getVm(GetVmRequest.newBuilder().setName(name).build()).getMigration());
            } finally {
                s.shutdownNow();
            }
        }
    }
}
