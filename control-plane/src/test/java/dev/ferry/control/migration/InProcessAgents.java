package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.ferry.backends.Backends;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.agent.AgentServices;
import dev.ferry.security.TlsFiles;
import dev.ferry.security.TransportSecurity;
import dev.ferry.v1.CheckVmMemoryRequest;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.GetMigrationRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WatchMigrationRequest;
import dev.ferry.v1.WorkloadSpec;
import dev.ferry.vm.Backend;
import io.grpc.ManagedChannel;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.Iterator;

/**
 * Agents in this JVM for tests that put their own services (interceptors) in an agent: start one over mutual TLS
 * with certificates from a test CA, create a small VM, migrate it to the end, check it is back intact.
 */
final class InProcessAgents {
    private InProcessAgents() {}

    /** An agent on loopback (any ports) with the certificates in {@code certs} (CertificateAuthority.init). */
    static Agent start(String name, Backend backend, AgentServices.Factory services, Path certs) throws Exception {
        InetSocketAddress any = new InetSocketAddress("127.0.0.1", 0);
        return Agent.start(name, TransportSecurity.mutualTls(TlsFiles.in(certs, "agent")), any, any, line -> { },
                Backends.open(Backends.Choice.valueOf(backend.name())), services);
    }

    /** A 1-vCPU, 64 MiB VM writing {@code workingSet} bytes at 4 MiB/s. */
    static String createVm(ManagedChannel ch, String id, long workingSet) {
        return VmServiceGrpc.newBlockingStub(ch).createVm(CreateVmRequest.newBuilder().setVmId(id).setVm(Vm.newBuilder()
                .setVcpuCount(1).setMemoryBytes(64 << 20).setWorkload(WorkloadSpec.newBuilder()
                        .setWorkingSetBytes(workingSet).setDirtyRateBytesPerSecond(4 << 20))).build()).getName();
    }

    /** Migrates {@code vm} to the agent at {@code to} as migration {@code id}; returns it once it ended. */
    static Migration migrate(ManagedChannel src, String id, String vm, String to) {
        var stub = MigrationServiceGrpc.newBlockingStub(src);
        Migration m = stub.createMigration(CreateMigrationRequest.newBuilder().setMigrationId(id)
                .setMigration(Migration.newBuilder().setVm(vm).setDestinationAddress(to)).build());
        Iterator<Migration> it = stub.watchMigration(WatchMigrationRequest.newBuilder().setName(m.getName()).build());
        while (it.hasNext()) {
            it.next();
        }
        return stub.getMigration(GetMigrationRequest.newBuilder().setName(m.getName()).build());
    }

    /** The VM runs and its memory is what its guest wrote. */
    static void assertRunsIntact(ManagedChannel ch, String vm) {
        var vms = VmServiceGrpc.newBlockingStub(ch);
        assertEquals(Vm.State.RUNNING, vms.getVm(GetVmRequest.newBuilder().setName(vm).build()).getState());
        assertEquals(0, vms.checkVmMemory(CheckVmMemoryRequest.newBuilder().setName(vm).build()).getWrongPages());
    }
}
