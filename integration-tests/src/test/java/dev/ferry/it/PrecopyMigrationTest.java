package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.v1.CancelMigrationRequest;
import dev.ferry.v1.FerryMetadata;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.IncompatibilityDetails;
import dev.ferry.v1.MemoryRegion;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationConfig;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.Mismatch;
import dev.ferry.v1.NegotiateMigrationRequest;
import dev.ferry.v1.PageAck;
import dev.ferry.v1.PageBatch;
import dev.ferry.v1.PageTransferServiceGrpc;
import dev.ferry.vm.Backend;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/** Precopy between two agent processes on loopback, each test ending with the guest verified. */
@ParameterizedClass(name = "on {0}")
@EnumSource(Backend.class)
class PrecopyMigrationTest {
    @Parameter
    Backend backend;
    static AgentProcess src;
    static AgentProcess dst;

    @BeforeParameterizedClassInvocation
    static void agents(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        src = Agents.start("it-source", backend);
        dst = Agents.start("it-destination", backend);
    }

    @AfterParameterizedClassInvocation
    static void stop() throws Exception {
        Agents.stop(src, dst);
        src = null;
        dst = null;
    }

    private static void assertMovedAndVerified(Migration m, String vm) {
        assertEquals(Migration.Phase.COMPLETED, m.getPhase(), m.getError().getMessage());
        assertTrue(m.getStatistics().getMemoryVerified(), "memory digests matched at switchover");
        assertEquals(m.getStatistics().getSourceMemoryDigest(), m.getStatistics().getDestinationMemoryDigest());
        assertTrue(m.getStatistics().hasDowntime());
        assertFalse(Agents.hasVm(src, vm), "the source released the VM");
        Agents.assertGuestRunsIntact(dst, m.getDestinationVm());
    }

    @Test
    void idleGuestMigrates() {
        String vm = Agents.createVm(src, "idle", 256 * MIB, 64 * MIB, 0, false).getName();
        Migration m = Agents.startMigration(src, dst, "idle", vm, Agents.policy().build());
        Migration end = Agents.watchToEnd(src, m.getName());
        assertMovedAndVerified(end, vm);
        assertTrue(end.getProgress().getZeroPages() > 0, "untouched memory travels as zero ranges");
        assertTrue(end.getConfig().getTscKhz() > 100_000, "the guest's TSC rate was negotiated: " + end.getConfig());
    }

    @Test
    void busyGuestMigrates() {
        String vm = Agents.createVm(src, "busy", 256 * MIB, 64 * MIB, 40 * MIB, false).getName();
        Migration m = Agents.startMigration(src, dst, "busy", vm, Agents.policy().build());
        Migration end = Agents.watchToEnd(src, m.getName());
        assertMovedAndVerified(end, vm);
        assertTrue(end.getStatistics().getRounds() >= 2, "a dirtying guest needs more than one round");
    }

    @Test
    void guestThatNeverConvergesFailsWhenThePolicySaysFailAndKeepsRunningAtTheSource() {
        String vm = Agents.createVm(src, "noconv", 256 * MIB, 64 * MIB, 0, true).getName();
        MigrationPolicy p = Agents.policy().setBandwidthLimitBytesPerSecond(16 * MIB).setMaxRounds(3)
                .setOnNoConvergence(MigrationPolicy.NoConvergenceAction.FAIL)
                .setMaxDowntime(com.google.protobuf.Duration.newBuilder().setNanos(10_000_000)).build();
        Migration end = Agents.watchToEnd(src, Agents.startMigration(src, dst, "noconv", vm, p).getName());
        assertEquals(Migration.Phase.FAILED, end.getPhase());
        assertFalse(end.getError().getMessage().isEmpty(), "the failure says why");
        Agents.assertGuestRunsIntact(src, vm);
        assertFalse(Agents.hasVm(dst, end.getDestinationVm()), "destination discarded its copy");
    }

    @Test
    void guestThatNeverConvergesIsStoppedAndCopiedWhenThePolicySaysContinue() {
        String vm = Agents.createVm(src, "forced", 256 * MIB, 32 * MIB, 0, true).getName();
        MigrationPolicy p = Agents.policy().setMaxRounds(3)
                .setOnNoConvergence(MigrationPolicy.NoConvergenceAction.CONTINUE)
                .setMaxDowntime(com.google.protobuf.Duration.newBuilder().setNanos(1_000_000)).build();
        Migration end = Agents.watchToEnd(src, Agents.startMigration(src, dst, "forced", vm, p).getName());
        assertMovedAndVerified(end, vm);
    }

    @Test
    void cancelDuringPrecopyLeavesTheSourceRunningAndTheDestinationEmpty() {
        String vm = Agents.createVm(src, "cancelme", 256 * MIB, 128 * MIB, 10 * MIB, false).getName();
        MigrationPolicy slow = Agents.policy().setBandwidthLimitBytesPerSecond(8 * MIB).build();
        Migration m = Agents.startMigration(src, dst, "cancelme", vm, slow);
        Agents.watchUntil(src, m.getName(), x -> x.getPhase() == Migration.Phase.PRECOPY
                && x.getProgress().getRound() >= 1);
        Migration c = Agents.migrations(src).cancelMigration(CancelMigrationRequest.newBuilder().setName(m.getName()).build());
        assertEquals(Migration.Phase.CANCELLED, c.getPhase());
        Agents.watchToEnd(src, m.getName());
        Agents.assertGuestRunsIntact(src, vm);
        assertFalse(Agents.hasVm(dst, m.getDestinationVm()), "destination discarded its copy");
        // cancelling twice is harmless; cancelling a finished migration elsewhere is refused
        assertEquals(Migration.Phase.CANCELLED, Agents.migrations(src)
                .cancelMigration(CancelMigrationRequest.newBuilder().setName(m.getName()).build()).getPhase());
    }

    @Test
    void cancelDuringStopAndCopyResumesTheSourceGuest() {
        // The guest rewrites its 32 MiB as fast as it can; after one round the policy forces
        // stop-and-copy, whose 32 MiB take seconds at 8 MiB/s: time enough to cancel with the
        // source vCPUs paused.
        String vm = Agents.createVm(src, "stopcancel", 128 * MIB, 32 * MIB, 0, true).getName();
        MigrationPolicy p = Agents.policy().setBandwidthLimitBytesPerSecond(8 * MIB).setMaxRounds(1)
                .setOnNoConvergence(MigrationPolicy.NoConvergenceAction.CONTINUE).build();
        Migration m = Agents.startMigration(src, dst, "stopcancel", vm, p);
        Agents.watchUntil(src, m.getName(), x -> x.getPhase() == Migration.Phase.STOP_AND_COPY);
        Migration c = Agents.migrations(src).cancelMigration(CancelMigrationRequest.newBuilder().setName(m.getName()).build());
        assertEquals(Migration.Phase.CANCELLED, c.getPhase());
        Agents.assertGuestRunsIntact(src, vm);
        assertFalse(Agents.hasVm(dst, m.getDestinationVm()), "destination discarded its copy");
    }

    @Test
    void cancelAfterCompletionIsRefused() {
        String vm = Agents.createVm(src, "done", 128 * MIB, 16 * MIB, 0, false).getName();
        Migration end = Agents.watchToEnd(src, Agents.startMigration(src, dst, "done", vm, Agents.policy().build()).getName());
        assertEquals(Migration.Phase.COMPLETED, end.getPhase());
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> Agents.migrations(src)
                .cancelMigration(CancelMigrationRequest.newBuilder().setName(end.getName()).build()));
        assertEquals(Status.Code.FAILED_PRECONDITION, e.getStatus().getCode());
    }

    @Test
    void incompatibleProposalIsRefusedWithTheMismatches() throws Exception {
        // Also a guest of the other backend: a destination agent runs only its own (--backend).
        Backend other = backend == Backend.KVM ? Backend.PROCESS : Backend.KVM;
        NegotiateMigrationRequest bad = NegotiateMigrationRequest.newBuilder().setMigration("migrations/bogus")
                .setSourceVm("vms/bogus").setSourceAddress("127.0.0.1:1")
                .setProposed(MigrationConfig.newBuilder().setVcpuCount(65).setPageSizeBytes(8192).setDataStreamCount(1)
                        .setBackend(dev.ferry.control.vm.VmProtos.toProto(other))
                        .addMemoryRegions(MemoryRegion.newBuilder().setSizeBytes(3 * MIB)))
                .build();
        // Negotiation is for agents: the test calls as a source agent would.
        ManagedChannel asAgent = dev.ferry.security.TransportSecurity.mutualTls(Agents.files("agent"))
                .channelBuilder(dst.controlAddress()).build();
        StatusRuntimeException e;
        try {
            e = assertThrows(StatusRuntimeException.class, () -> dev.ferry.v1.MigrationServiceGrpc.newBlockingStub(asAgent)
                    .withDeadlineAfter(120, TimeUnit.SECONDS).negotiateMigration(bad));
        } finally {
            asAgent.shutdownNow();
        }
        assertEquals(Status.Code.FAILED_PRECONDITION, e.getStatus().getCode());
        com.google.rpc.Status st = StatusProto.fromThrowable(e);
        IncompatibilityDetails d = st.getDetailsList().stream().filter(x -> x.is(IncompatibilityDetails.class))
                .map(x -> {
                    try {
                        return x.unpack(IncompatibilityDetails.class);
                    } catch (Exception ex) {
                        throw new AssertionError(ex);
                    }
                }).findFirst().orElseThrow();
        assertTrue(d.getMismatchesList().stream().map(Mismatch::getField).toList()
                .containsAll(java.util.List.of("backend", "page_size_bytes", "vcpu_count")), d.toString());
        Mismatch b = d.getMismatchesList().stream().filter(x -> x.getField().equals("backend")).findFirst().orElseThrow();
        assertEquals(other.cliName(), b.getSourceValue());
        assertEquals("[" + backend.cliName() + "]", b.getDestinationValue());
        assertFalse(Agents.hasVm(dst, "vms/bogus"));
    }

    @Test
    void pagesWithAWrongSessionTokenAreRefusedAndTheMigrationStillVerifies() throws Exception {
        String vm = Agents.createVm(src, "token", 256 * MIB, 64 * MIB, 5 * MIB, false).getName();
        Migration m = Agents.startMigration(src, dst, "token", vm,
                Agents.policy().setBandwidthLimitBytesPerSecond(64 * MIB).build());
        Agents.watchUntil(src, m.getName(), x -> x.getPhase() == Migration.Phase.PRECOPY && x.getProgress().getRound() >= 1);
        // A peer with a valid agent certificate, but not the session's token.
        ManagedChannel data = dev.ferry.security.TransportSecurity.mutualTls(Agents.files("agent"))
                .channelBuilder(dst.dataAddress()).build();
        try {
            Metadata md = new Metadata();
            md.put(FerryMetadata.SESSION_TOKEN, "not-the-token");
            var stub = PageTransferServiceGrpc.newStub(data).withInterceptors(MetadataUtils.newAttachHeadersInterceptor(md));
            CompletableFuture<Throwable> done = new CompletableFuture<>();
            StreamObserver<PageBatch> req = stub.streamPages(new StreamObserver<PageAck>() {
                @Override
                public void onNext(PageAck value) {}

                @Override
                public void onError(Throwable t) {
                    done.complete(t);
                }

                @Override
                public void onCompleted() {
                    done.complete(null);
                }
            });
            // A page of garbage at guest-physical 1 MiB: had it landed, the digest check would fail.
            req.onNext(PageBatch.newBuilder().setRound(1).addPageRuns(dev.ferry.v1.PageRange.newBuilder()
                    .setGuestPhysicalAddress(MIB).setPageCount(1)).setData(ByteString.copyFrom(new byte[4096]))
                    .build());
            req.onCompleted();
            Throwable t = done.get(30, TimeUnit.SECONDS);
            assertEquals(Status.Code.UNAUTHENTICATED, Status.fromThrowable(t).getCode());
        } finally {
            data.shutdownNow();
        }
        assertMovedAndVerified(Agents.watchToEnd(src, m.getName()), vm);
    }

    @Test
    void unknownVmAndBadRequestsGetClearStatuses() {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> Agents.startMigration(src, dst,
                "ghost", "vms/ghost", Agents.policy().build()));
        assertEquals(Status.Code.NOT_FOUND, e.getStatus().getCode());
        e = assertThrows(StatusRuntimeException.class,
                () -> Agents.vms(src).getVm(GetVmRequest.newBuilder().setName("vms/ghost").build()));
        assertEquals(Status.Code.NOT_FOUND, e.getStatus().getCode());
        String vm = Agents.createVm(src, "badaddr", 64 * MIB, 8 * MIB, 0, false).getName();
        for (String address : new String[] {"no-port", "host:0", "dns:///host:443", "host:http"}) {
            e = assertThrows(StatusRuntimeException.class, () -> Agents.migrations(src).createMigration(
                    dev.ferry.v1.CreateMigrationRequest.newBuilder().setMigrationId("badaddr").setMigration(
                            Migration.newBuilder().setVm(vm).setDestinationAddress(address)).build()));
            assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode(), address);
            assertTrue(e.getStatus().getDescription().contains("host:port"), e.getStatus().getDescription());
        }
        Agents.assertGuestRunsIntact(src, vm);
    }
}
