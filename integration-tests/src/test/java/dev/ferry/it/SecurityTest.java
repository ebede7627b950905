package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.security.CertificateAuthority;
import dev.ferry.security.PeerIdentity;
import dev.ferry.security.Role;
import dev.ferry.security.TlsFiles;
import dev.ferry.security.TransportSecurity;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.ListMigrationsRequest;
import dev.ferry.v1.ListVmsRequest;
import dev.ferry.v1.MemoryRegion;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationConfig;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.NegotiateMigrationRequest;
import dev.ferry.v1.PageAck;
import dev.ferry.v1.PageBatch;
import dev.ferry.v1.PageFaultRequest;
import dev.ferry.v1.PageTransferServiceGrpc;
import dev.ferry.v1.PostcopyPagerServiceGrpc;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.vm.Backend;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.StreamObserver;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Mutual TLS and roles between real agent processes: every refused caller leaves the agent it called
 * with nothing allocated, and a source refuses to migrate to a peer that is not an agent at the address
 * it dialled, its guest running on, intact.
 */
class SecurityTest {
    static AgentProcess src;
    static AgentProcess dst;
    private final List<ManagedChannel> channels = new ArrayList<>();

    @BeforeAll
    static void agents() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS); // the transport is the same whatever runs the guest
        // No warm-up: its own migrations would be all the agents hold, and this class measures nothing.
        src = Agents.start("sec-source", Backend.PROCESS, "--no-warmup");
        dst = Agents.start("sec-destination", Backend.PROCESS, "--no-warmup");
    }

    @AfterAll
    static void stop() throws Exception {
        Agents.stop(src, dst);
    }

    @AfterEach
    void closeChannels() {
        channels.forEach(ManagedChannel::shutdownNow);
    }

    private ManagedChannel dial(TransportSecurity s, String target) {
        ManagedChannel c = s.channelBuilder(target).build();
        channels.add(c);
        return c;
    }

    /**
     * A controller client that checks the CA and the host but not that the server is an agent: only the
     * test uses it, to look at what a peer that is not an agent holds.
     */
    private ManagedChannel inspect(String target, String authority) throws Exception {
        TlsFiles c = Agents.files("controller");
        NettyChannelBuilder b = NettyChannelBuilder.forTarget(target).sslContext(GrpcSslContexts.forClient()
                .trustManager(c.ca().toFile()).keyManager(c.cert().toFile(), c.key().toFile()).build());
        if (authority != null) {
            b.overrideAuthority(authority);
        }
        ManagedChannel ch = b.build();
        channels.add(ch);
        return ch;
    }

    private static Status.Code createVm(ManagedChannel c, String id) {
        try {
            VmServiceGrpc.newBlockingStub(c).withDeadlineAfter(30, TimeUnit.SECONDS).createVm(CreateVmRequest.newBuilder()
                    .setVmId(id).setVm(Vm.newBuilder().setMemoryBytes(64 * MIB)).build());
            return Status.Code.OK;
        } catch (StatusRuntimeException e) {
            return e.getStatus().getCode();
        }
    }

    private static void assertHoldsNothing(ManagedChannel controller) {
        assertEquals(0, VmServiceGrpc.newBlockingStub(controller).withDeadlineAfter(30, TimeUnit.SECONDS)
                .listVms(ListVmsRequest.getDefaultInstance()).getVmsCount(), "no VM was created");
        assertEquals(0, MigrationServiceGrpc.newBlockingStub(controller).withDeadlineAfter(30, TimeUnit.SECONDS)
                .listMigrations(ListMigrationsRequest.getDefaultInstance()).getMigrationsCount(), "no migration exists");
    }

    private static void assertHoldsNothing(AgentProcess a) {
        assertTrue(Agents.vms(a).listVms(ListVmsRequest.getDefaultInstance()).getVmsList().isEmpty(), a.name() + " VMs");
        assertTrue(Agents.migrations(a).listMigrations(ListMigrationsRequest.getDefaultInstance()).getMigrationsList()
                .isEmpty(), a.name() + " migrations");
    }

    /** Opens StreamPages with one batch of garbage and returns how the stream ended. */
    private static Status streamPages(ManagedChannel c) throws Exception {
        CompletableFuture<Status> done = new CompletableFuture<>();
        StreamObserver<PageBatch> req = PageTransferServiceGrpc.newStub(c).streamPages(new StreamObserver<PageAck>() {
            @Override
            public void onNext(PageAck value) {}

            @Override
            public void onError(Throwable t) {
                done.complete(Status.fromThrowable(t));
            }

            @Override
            public void onCompleted() {
                done.complete(Status.OK);
            }
        });
        req.onNext(PageBatch.newBuilder().setRound(1).addPageRuns(dev.ferry.v1.PageRange.newBuilder()
                .setGuestPhysicalAddress(MIB).setPageCount(1)).setData(ByteString.copyFrom(new byte[4096])).build());
        req.onCompleted();
        return done.get(30, TimeUnit.SECONDS);
    }

    @Test
    void aPlaintextClientIsRefusedOnEveryPort() throws Exception {
        TransportSecurity plain = TransportSecurity.insecure();
        assertEquals(Status.Code.UNAVAILABLE, createVm(dial(plain, dst.controlAddress()), "plain"));
        assertEquals(Status.Code.UNAVAILABLE, streamPages(dial(plain, dst.dataAddress())).getCode());
        assertHoldsNothing(dst);
    }

    @Test
    void aClientWithACertificateFromAnotherCaIsRefused() throws Exception {
        Path other = Files.createTempDirectory(Path.of("target").toAbsolutePath(), "it-other-ca-");
        CertificateAuthority.init(other, List.of(), List.of());
        // The client trusts both CAs, so only the agent's refusal of its certificate stops it.
        Path both = other.resolve("both.crt");
        Files.writeString(both, Files.readString(Agents.files("agent").ca()) + Files.readString(other.resolve("ca.crt")));
        TransportSecurity foreign = TransportSecurity.mutualTls(
                new TlsFiles(other.resolve("controller.crt"), other.resolve("controller.key"), both));
        assertEquals(Status.Code.UNAVAILABLE, createVm(dial(foreign, dst.controlAddress()), "foreign"));
        TransportSecurity foreignAgent = TransportSecurity.mutualTls(
                new TlsFiles(other.resolve("agent.crt"), other.resolve("agent.key"), both));
        assertEquals(Status.Code.UNAVAILABLE, streamPages(dial(foreignAgent, dst.dataAddress())).getCode());
        assertHoldsNothing(dst);
    }

    @Test
    void aControllerCannotNegotiateStreamPagesOrFetchFaults() throws Exception {
        TransportSecurity controller = Agents.controller();
        MigrationConfig proposal = MigrationConfig.newBuilder().setVcpuCount(1).setPageSizeBytes(4096)
                .addMemoryRegions(MemoryRegion.newBuilder().setSlot(0).setSizeBytes(64 * MIB)).build();
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> MigrationServiceGrpc
                .newBlockingStub(dial(controller, dst.controlAddress())).withDeadlineAfter(30, TimeUnit.SECONDS)
                .negotiateMigration(NegotiateMigrationRequest.newBuilder().setMigration("migrations/forged")
                        .setSourceVm("vms/forged").setProposed(proposal).build()));
        assertEquals(Status.Code.PERMISSION_DENIED, e.getStatus().getCode());
        assertEquals(Status.Code.PERMISSION_DENIED, streamPages(dial(controller, dst.dataAddress())).getCode());
        e = assertThrows(StatusRuntimeException.class, () -> PostcopyPagerServiceGrpc
                .newBlockingStub(dial(controller, src.pagerAddress())).withDeadlineAfter(30, TimeUnit.SECONDS)
                .pageFault(PageFaultRequest.newBuilder().setGuestPhysicalAddress(0).build()));
        assertEquals(Status.Code.PERMISSION_DENIED, e.getStatus().getCode());
        assertHoldsNothing(dst);
    }

    /** Migrating to {@code to} must be refused; the guest stays on the source, running and intact. */
    private void assertRefusedAndIntact(String id, String to) {
        String vm = Agents.createVm(src, id, 128 * MIB, 32 * MIB, 4 * MIB, false).getName();
        try {
            Migration m = Agents.migrations(src).createMigration(dev.ferry.v1.CreateMigrationRequest.newBuilder()
                    .setMigrationId(id).setMigration(Migration.newBuilder().setVm(vm).setDestinationAddress(to)).build());
            Migration end = Agents.watchToEnd(src, m.getName());
            assertEquals(Migration.Phase.FAILED, end.getPhase(), end.toString());
        } catch (StatusRuntimeException e) {
            assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.getStatus().toString());
        }
        Agents.assertGuestRunsIntact(src, vm);
        Agents.vms(src).deleteVm(dev.ferry.v1.DeleteVmRequest.newBuilder().setName(vm).build());
    }

    @Test
    void aSourceRefusesADestinationWhoseCertificateIsNotAnAgents() throws Exception {
        try (AgentProcess impostor = Agents.startWith(Agents.files("controller"), "sec-impostor", Backend.PROCESS,
                "--no-warmup")) {
            assertRefusedAndIntact("impostor", impostor.controlAddress());
            assertHoldsNothing(inspect(impostor.controlAddress(), null));
        }
    }

    @Test
    void aSourceRefusesADestinationWhoseCertificateNamesAnotherHost() throws Exception {
        Path dir = Files.createTempDirectory(Path.of("target").toAbsolutePath(), "it-elsewhere-");
        CertificateAuthority.load(Agents.certs()).issue(new PeerIdentity(Role.AGENT, "elsewhere"),
                List.of("elsewhere.example"), List.of("10.9.9.9")).write(dir.resolve("agent.crt"), dir.resolve("agent.key"));
        TlsFiles elsewhere = new TlsFiles(dir.resolve("agent.crt"), dir.resolve("agent.key"), Agents.files("agent").ca());
        try (AgentProcess misnamed = Agents.startWith(elsewhere, "sec-misnamed", Backend.PROCESS, "--no-warmup")) {
            assertRefusedAndIntact("misnamed", misnamed.controlAddress());
            assertHoldsNothing(inspect(misnamed.controlAddress(), "elsewhere.example"));
        }
    }
}
