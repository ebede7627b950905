package dev.ferry.control.edge;

import com.google.protobuf.ByteString;
import com.google.protobuf.Message;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateCodec;
import dev.ferry.state.fuzz.SeedCorpus;
import dev.ferry.v1.AbortIncomingMigrationRequest;
import dev.ferry.v1.CancelMigrationRequest;
import dev.ferry.v1.CheckVmMemoryRequest;
import dev.ferry.v1.CommitIncomingMigrationRequest;
import dev.ferry.v1.CompleteIncomingMigrationRequest;
import dev.ferry.v1.CompleteIncomingPostcopyRequest;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.DeleteVmRequest;
import dev.ferry.v1.GetMigrationRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.ListMigrationsRequest;
import dev.ferry.v1.ListVmsRequest;
import dev.ferry.v1.MemoryDigest;
import dev.ferry.v1.MemoryRegion;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationConfig;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.NegotiateMigrationRequest;
import dev.ferry.v1.PauseVmRequest;
import dev.ferry.v1.ResumeIncomingMigrationRequest;
import dev.ferry.v1.ResumeMigrationRequest;
import dev.ferry.v1.ResumeVmRequest;
import dev.ferry.v1.SwitchToPostcopyRequest;
import dev.ferry.v1.TransferDeviceStateRequest;
import dev.ferry.v1.VerifyIncomingMigrationRequest;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WatchMigrationRequest;
import dev.ferry.v1.WorkloadSpec;
import io.grpc.MethodDescriptor;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The seed corpus of {@link ControlRpcFuzzTest}: one well-formed request per RPC, made by the generated encoders,
 * for a small VM "fuzz" and an incoming migration "in" (within the fuzz agent's admission limits), plus one
 * malformed body. Keeps the committed files equal to it ({@code -Dferry.fuzz.writeSeeds=true} rewrites them; see
 * {@link SeedCorpus}).
 */
class ControlFuzzSeedsTest {
    private static final long MIB = 1 << 20;

    static Map<String, byte[]> rpcSeeds() {
        Map<String, byte[]> s = new LinkedHashMap<>();
        Vm.Builder vm = Vm.newBuilder().setVcpuCount(1).setMemoryBytes(32 * MIB)
                .setWorkload(WorkloadSpec.newBuilder().setWorkingSetBytes(4 * MIB).setDirtyRateBytesPerSecond(MIB));
        put(s, "create-vm", VmServiceGrpc.getCreateVmMethod(), CreateVmRequest.newBuilder().setVmId("fuzz").setVm(vm)
                .build());
        put(s, "get-vm", VmServiceGrpc.getGetVmMethod(), GetVmRequest.newBuilder().setName("vms/fuzz").build());
        put(s, "list-vms", VmServiceGrpc.getListVmsMethod(), ListVmsRequest.newBuilder().setPageSize(2).build());
        put(s, "pause-vm", VmServiceGrpc.getPauseVmMethod(), PauseVmRequest.newBuilder().setName("vms/fuzz").build());
        put(s, "resume-vm", VmServiceGrpc.getResumeVmMethod(), ResumeVmRequest.newBuilder().setName("vms/fuzz").build());
        put(s, "check-vm-memory", VmServiceGrpc.getCheckVmMemoryMethod(), CheckVmMemoryRequest.newBuilder()
                .setName("vms/fuzz").build());
        put(s, "delete-vm", VmServiceGrpc.getDeleteVmMethod(), DeleteVmRequest.newBuilder().setName("vms/fuzz").build());
        put(s, "snapshot-vm", VmServiceGrpc.getSnapshotVmMethod(), dev.ferry.v1.SnapshotVmRequest.newBuilder()
                .setName("vms/fuzz").setSnapshotDirectory("fuzz/s1").build());
        put(s, "restore-vm", VmServiceGrpc.getRestoreVmMethod(), dev.ferry.v1.RestoreVmRequest.newBuilder()
                .setVmId("fuzz2").setSnapshotDirectory("fuzz/s1").setOnDemand(true).build());

        put(s, "create-migration", MigrationServiceGrpc.getCreateMigrationMethod(), CreateMigrationRequest.newBuilder()
                .setMigrationId("fuzz").setMigration(Migration.newBuilder().setVm("vms/fuzz")
                        .setDestinationAddress("127.0.0.1:1")).build());
        put(s, "get-migration", MigrationServiceGrpc.getGetMigrationMethod(), GetMigrationRequest.newBuilder()
                .setName("migrations/fuzz").build());
        put(s, "list-migrations", MigrationServiceGrpc.getListMigrationsMethod(), ListMigrationsRequest.newBuilder()
                .setPageSize(2).build());
        put(s, "watch-migration", MigrationServiceGrpc.getWatchMigrationMethod(), WatchMigrationRequest.newBuilder()
                .setName("migrations/fuzz").build());
        put(s, "cancel-migration", MigrationServiceGrpc.getCancelMigrationMethod(), CancelMigrationRequest.newBuilder()
                .setName("migrations/fuzz").build());
        put(s, "switch-to-postcopy", MigrationServiceGrpc.getSwitchToPostcopyMethod(), SwitchToPostcopyRequest
                .newBuilder().setName("migrations/fuzz").build());
        put(s, "resume-migration", MigrationServiceGrpc.getResumeMigrationMethod(), ResumeMigrationRequest.newBuilder()
                .setName("migrations/fuzz").build());
        put(s, "get-migration-limits", MigrationServiceGrpc.getGetMigrationLimitsMethod(),
                dev.ferry.v1.GetMigrationLimitsRequest.getDefaultInstance());
        put(s, "update-migration", MigrationServiceGrpc.getUpdateMigrationMethod(), dev.ferry.v1.UpdateMigrationRequest
                .newBuilder().setMigration(Migration.newBuilder().setName("migrations/fuzz").setPolicy(
                        dev.ferry.v1.MigrationPolicy.newBuilder().setBandwidthLimitBytesPerSecond(64 * MIB)))
                .setUpdateMask(com.google.protobuf.FieldMask.newBuilder()
                        .addPaths("policy.bandwidth_limit_bytes_per_second")).build());

        MigrationConfig config = MigrationConfig.newBuilder().setVcpuCount(1).setPageSizeBytes(4096)
                .setDataStreamCount(1).addMemoryRegions(MemoryRegion.newBuilder().setSizeBytes(32 * MIB)
                        .setPageSizeBytes(4096)).build();
        put(s, "negotiate", MigrationServiceGrpc.getNegotiateMigrationMethod(), NegotiateMigrationRequest.newBuilder()
                .setMigration("migrations/in").setSourceVm("vms/src").setSourceAddress("127.0.0.1:1")
                .setProposed(config).build());
        put(s, "transfer-device-state", MigrationServiceGrpc.getTransferDeviceStateMethod(), TransferDeviceStateRequest
                .newBuilder().setMigration("migrations/in").setState(ByteString.copyFrom(StateCodec.encode(
                        SectionSet.empty()))).build());
        put(s, "complete-incoming", MigrationServiceGrpc.getCompleteIncomingMigrationMethod(),
                CompleteIncomingMigrationRequest.newBuilder().setMigration("migrations/in")
                        .setSourceMemoryDigest(MemoryDigest.newBuilder().setAlgorithm(MemoryDigest.Algorithm.XXH3_64_PAGE_SUM)
                                .setValue(ByteString.copyFrom(new byte[8])).setPageCount(8192)).build());
        put(s, "complete-incoming-postcopy", MigrationServiceGrpc.getCompleteIncomingPostcopyMethod(),
                CompleteIncomingPostcopyRequest.newBuilder().setMigration("migrations/in").build());
        put(s, "verify-incoming", MigrationServiceGrpc.getVerifyIncomingMigrationMethod(),
                VerifyIncomingMigrationRequest.newBuilder().setMigration("migrations/in").build());
        put(s, "commit-incoming", MigrationServiceGrpc.getCommitIncomingMigrationMethod(),
                CommitIncomingMigrationRequest.newBuilder().setMigration("migrations/in").build());
        put(s, "resume-incoming", MigrationServiceGrpc.getResumeIncomingMigrationMethod(),
                ResumeIncomingMigrationRequest.newBuilder().setMigration("migrations/in")
                        .setPostcopyPagerAddress("127.0.0.1:1").build());
        put(s, "abort-incoming", MigrationServiceGrpc.getAbortIncomingMigrationMethod(),
                AbortIncomingMigrationRequest.newBuilder().setMigration("migrations/in").build());

        byte[] truncated = CreateVmRequest.newBuilder().setVmId("fuzz").setVm(vm).build().toByteArray();
        s.put("create-vm-truncated", seed(VmServiceGrpc.getCreateVmMethod(), Arrays.copyOf(truncated,
                truncated.length - 3)));
        return s;
    }

    private static void put(Map<String, byte[]> seeds, String name, MethodDescriptor<?, ?> method, Message request) {
        seeds.put(name, seed(method, request.toByteArray()));
    }

    private static byte[] seed(MethodDescriptor<?, ?> method, byte[] request) {
        byte[] in = new byte[request.length + 1];
        in[0] = (byte) ControlRpcFuzzTest.indexOf(method);
        System.arraycopy(request, 0, in, 1, request.length);
        return in;
    }

    @Test
    void rpcSeedsAreCommitted() {
        SeedCorpus.check(ControlRpcFuzzTest.class, "everyCallEndsWithADocumentedStatus", rpcSeeds());
    }
}
