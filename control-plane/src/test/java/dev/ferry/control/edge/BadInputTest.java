package dev.ferry.control.edge;

import dev.ferry.security.TransportSecurity;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import com.google.protobuf.Duration;
import dev.ferry.backends.Backends;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.migration.MigrationServices;
import dev.ferry.v1.AbortIncomingMigrationRequest;
import dev.ferry.v1.CancelMigrationRequest;
import dev.ferry.v1.CheckVmMemoryRequest;
import dev.ferry.v1.RestoreVmRequest;
import dev.ferry.v1.SnapshotVmRequest;
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
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.NegotiateMigrationRequest;
import dev.ferry.v1.PauseVmRequest;
import dev.ferry.v1.ResumeIncomingMigrationRequest;
import dev.ferry.v1.ResumeMigrationRequest;
import dev.ferry.v1.ResumeVmRequest;
import dev.ferry.v1.StateSectionVersion;
import dev.ferry.v1.SwitchToPostcopyRequest;
import dev.ferry.v1.TransferDeviceStateRequest;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WatchMigrationRequest;
import dev.ferry.v1.WorkloadSpec;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every RPC of VmService and MigrationService fed bad input, in-process: each is refused with the documented code,
 * a message that names the field, and at most 128 characters of what was sent quoted back.
 */
class BadInputTest {
    /** Under the 64 KiB request limit, so it reaches validation. */
    private static final String HUGE = "vms/" + "x".repeat(60_000);
    private static final long GIB = 1L << 30;
    /** A message with the field name, the reason and 128 quoted characters fits comfortably in this. */
    private static final int MAX_MESSAGE = 600;

    private static Agent agent;
    private static ManagedChannel channel;

    @BeforeAll
    static void start() throws Exception {
        String n = InProcessServerBuilder.generateName();
        agent = Agent.start("bad-input", TransportSecurity.insecure(), InProcessServerBuilder.forName(n), InProcessServerBuilder.forName(n + "-data"),
                InProcessServerBuilder.forName(n + "-pager"), null, line -> { }, Backends.open(Backends.Choice.AUTO),
                MigrationServices::new);
        channel = InProcessChannelBuilder.forName(n).build();
    }

    @AfterAll
    static void stop() {
        channel.shutdownNow();
        agent.close();
    }

    private static VmServiceGrpc.VmServiceBlockingStub vms() {
        return VmServiceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS);
    }

    private static MigrationServiceGrpc.MigrationServiceBlockingStub migrations() {
        return MigrationServiceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS);
    }

    record Case(String name, Consumer<Void> call, Status.Code code, List<String> mustContain) {
        @Override
        public String toString() {
            return name;
        }
    }

    private static Case c(String name, Runnable call, Status.Code code, String... mustContain) {
        return new Case(name, v -> call.run(), code, List.of(mustContain));
    }

    private static Vm.Builder vm() {
        return Vm.newBuilder().setVcpuCount(1).setMemoryBytes(64 << 20);
    }

    private static CreateVmRequest create(Vm.Builder v) {
        return CreateVmRequest.newBuilder().setVmId("ok").setVm(v).build();
    }

    private static Migration.Builder mig() {
        return Migration.newBuilder().setVm("vms/ok").setDestinationAddress("127.0.0.1:1");
    }

    private static CreateMigrationRequest createMig(Migration.Builder m) {
        return CreateMigrationRequest.newBuilder().setMigrationId("ok").setMigration(m).build();
    }

    private static MigrationConfig.Builder config() {
        return MigrationConfig.newBuilder().setVcpuCount(1).setPageSizeBytes(4096).setDataStreamCount(1)
                .addMemoryRegions(MemoryRegion.newBuilder().setSizeBytes(64 << 20).setPageSizeBytes(4096));
    }

    private static NegotiateMigrationRequest negotiate(MigrationConfig.Builder c) {
        return NegotiateMigrationRequest.newBuilder().setMigration("migrations/ok").setSourceVm("vms/ok")
                .setSourceAddress("127.0.0.1:1").setProposed(c).build();
    }

    static Stream<Case> cases() {
        List<Case> l = new ArrayList<>();
        Status.Code bad = Status.Code.INVALID_ARGUMENT;
        // Malformed names on every rpc that takes one.
        for (String name : new String[] {"", "web", "vms/", "vms/Web", "vms/-a", "vms/a b", "migrations/web",
                "vms/a\nb", HUGE}) {
            String q = "'" + name.replace("\n", "\\n") + "'";
            l.add(c("GetVm " + q, () -> vms().getVm(GetVmRequest.newBuilder().setName(name).build()), bad, "name"));
            l.add(c("PauseVm " + q, () -> vms().pauseVm(PauseVmRequest.newBuilder().setName(name).build()), bad, "name"));
            l.add(c("ResumeVm " + q, () -> vms().resumeVm(ResumeVmRequest.newBuilder().setName(name).build()), bad, "name"));
            l.add(c("DeleteVm " + q, () -> vms().deleteVm(DeleteVmRequest.newBuilder().setName(name).build()), bad, "name"));
            l.add(c("CheckVmMemory " + q, () -> vms().checkVmMemory(CheckVmMemoryRequest.newBuilder().setName(name)
                    .build()), bad, "name"));
            l.add(c("SnapshotVm " + q, () -> vms().snapshotVm(SnapshotVmRequest.newBuilder().setName(name)
                    .setSnapshotDirectory("s1").build()), bad, "name"));
            String mname = name.replace("vms/", "migrations/").replace("migrations/web", "vms/web");
            l.add(c("GetMigration " + q, () -> migrations().getMigration(GetMigrationRequest.newBuilder()
                    .setName(mname).build()), bad, "name"));
            l.add(c("CancelMigration " + q, () -> migrations().cancelMigration(CancelMigrationRequest.newBuilder()
                    .setName(mname).build()), bad, "name"));
            l.add(c("SwitchToPostcopy " + q, () -> migrations().switchToPostcopy(SwitchToPostcopyRequest.newBuilder()
                    .setName(mname).build()), bad, "name"));
            l.add(c("ResumeMigration " + q, () -> migrations().resumeMigration(ResumeMigrationRequest.newBuilder()
                    .setName(mname).build()), bad, "name"));
            l.add(c("WatchMigration " + q, () -> migrations().watchMigration(WatchMigrationRequest.newBuilder()
                    .setName(mname).build()).hasNext(), bad, "name"));
            l.add(c("TransferDeviceState " + q, () -> migrations().transferDeviceState(TransferDeviceStateRequest
                    .newBuilder().setMigration(mname).build()), bad, "migration"));
            l.add(c("CompleteIncomingMigration " + q, () -> migrations().completeIncomingMigration(
                    CompleteIncomingMigrationRequest.newBuilder().setMigration(mname).build()), bad, "migration"));
            l.add(c("CompleteIncomingPostcopy " + q, () -> migrations().completeIncomingPostcopy(
                    CompleteIncomingPostcopyRequest.newBuilder().setMigration(mname).build()), bad, "migration"));
            l.add(c("ResumeIncomingMigration " + q, () -> migrations().resumeIncomingMigration(
                    ResumeIncomingMigrationRequest.newBuilder().setMigration(mname).setPostcopyPagerAddress("h:1")
                            .build()), bad, "migration"));
            l.add(c("AbortIncomingMigration " + q, () -> migrations().abortIncomingMigration(
                    AbortIncomingMigrationRequest.newBuilder().setMigration(mname).build()), bad, "migration"));
            l.add(c("VerifyIncomingMigration " + q, () -> migrations().verifyIncomingMigration(
                    dev.ferry.v1.VerifyIncomingMigrationRequest.newBuilder().setMigration(mname).build()), bad,
                    "migration"));
            l.add(c("CommitIncomingMigration " + q, () -> migrations().commitIncomingMigration(
                    dev.ferry.v1.CommitIncomingMigrationRequest.newBuilder().setMigration(mname).build()), bad,
                    "migration"));
        }
        // Above the method's request limit: refused before it is parsed.
        l.add(c("GetVm with a 100 000-character name", () -> vms().getVm(GetVmRequest.newBuilder()
                .setName("vms/" + "x".repeat(100_000)).build()), Status.Code.RESOURCE_EXHAUSTED, "larger than 65536",
                "ferry.v1.VmService/GetVm"));
        // Well-formed names of nothing: NOT_FOUND, so the two stay apart.
        l.add(c("GetVm of a missing VM", () -> vms().getVm(GetVmRequest.newBuilder().setName("vms/ghost").build()),
                Status.Code.NOT_FOUND, "vms/ghost"));
        l.add(c("GetMigration of a missing migration", () -> migrations().getMigration(GetMigrationRequest.newBuilder()
                .setName("migrations/ghost").build()), Status.Code.NOT_FOUND, "migrations/ghost"));

        // CreateVm
        l.add(c("CreateVm without vm", () -> vms().createVm(CreateVmRequest.newBuilder().setVmId("a").build()), bad,
                "vm is required"));
        l.add(c("CreateVm bad vm_id", () -> vms().createVm(CreateVmRequest.newBuilder().setVmId("Bad_Id").setVm(vm())
                .build()), bad, "vm_id", "Bad_Id"));
        l.add(c("CreateVm huge vm_id", () -> vms().createVm(CreateVmRequest.newBuilder().setVmId(HUGE.substring(4))
                .setVm(vm()).build()), bad, "vm_id", "60000 characters"));
        l.add(c("CreateVm vcpu_count 0", () -> vms().createVm(create(vm().setVcpuCount(0))), bad, "vcpu_count",
                "at least 1"));
        l.add(c("CreateVm vcpu_count 65", () -> vms().createVm(create(vm().setVcpuCount(65))), bad, "vcpu_count", "65"));
        l.add(c("CreateVm vcpu_count 2^32-1", () -> vms().createVm(create(vm().setVcpuCount(-1))), bad, "vcpu_count",
                "4294967295", "too large"));
        l.add(c("CreateVm memory 0", () -> vms().createVm(create(vm().setMemoryBytes(0))), bad, "memory_bytes",
                "required"));
        l.add(c("CreateVm memory 2^62", () -> vms().createVm(create(vm().setMemoryBytes(1L << 62))), bad,
                "memory_bytes", "4611686018427387904", "too large"));
        l.add(c("CreateVm memory 2^64-1", () -> vms().createVm(create(vm().setMemoryBytes(-1L))), bad, "memory_bytes",
                "18446744073709551615", "too large"));
        l.add(c("CreateVm memory not 2 MiB units", () -> vms().createVm(create(vm().setMemoryBytes(3L << 19))), bad,
                "memory_bytes", "multiple of 2097152"));
        l.add(c("CreateVm backing 8192", () -> vms().createVm(create(vm().setBackingPageSizeBytes(8192))), bad,
                "backing_page_size_bytes", "8192"));
        l.add(c("CreateVm backing 2 MiB", () -> vms().createVm(create(vm().setBackingPageSizeBytes(2 << 20))),
                Status.Code.FAILED_PRECONDITION, "hugetlbfs"));
        l.add(c("CreateVm slots not adding up", () -> vms().createVm(create(vm().addMemorySlotSizesBytes(32 << 20))),
                bad, "memory_slot_sizes_bytes", "add up"));
        l.add(c("CreateVm slot above 1 GiB", () -> vms().createVm(create(vm().setMemoryBytes(4 * GIB)
                .addMemorySlotSizesBytes(2 * GIB).addMemorySlotSizesBytes(2 * GIB))), bad, "memory_slot_sizes_bytes[0]"));
        l.add(c("CreateVm unknown backend", () -> vms().createVm(create(vm().setBackendValue(99))), bad, "backend",
                "99"));
        l.add(c("CreateVm label key with a space", () -> vms().createVm(create(vm().putLabels("a b", "x"))), bad,
                "vm.labels", "'a b'", "not a label key"));
        l.add(c("CreateVm label value too long", () -> vms().createVm(create(vm().putLabels("app", "v".repeat(64)))),
                bad, "vm.labels[app]", "not a label value"));
        l.add(c("CreateVm 33 labels", () -> {
            Vm.Builder many = vm();
            for (int i = 0; i < 33; i++) {
                many.putLabels("k" + i, "v");
            }
            vms().createVm(create(many));
        }, bad, "vm.labels", "33 labels", "at most 32"));
        l.add(c("CreateVm unknown access pattern", () -> vms().createVm(create(vm().setWorkload(WorkloadSpec
                .newBuilder().setAccessPatternValue(7)))), bad, "access_pattern", "7"));
        l.add(c("CreateVm working set above memory", () -> vms().createVm(create(vm().setWorkload(WorkloadSpec
                .newBuilder().setWorkingSetBytes(1L << 62)))), bad, "working_set_bytes", "4611686018427387904"));
        l.add(c("CreateVm hot set above working set", () -> vms().createVm(create(vm().setWorkload(WorkloadSpec
                .newBuilder().setWorkingSetBytes(1 << 20).setHotSetBytes(2 << 20)))), bad, "hot_set_bytes"));
        l.add(c("CreateVm hot_write_permille 1001", () -> vms().createVm(create(vm().setWorkload(WorkloadSpec
                .newBuilder().setHotWritePermille(1001)))), bad, "hot_write_permille", "1001"));
        l.add(c("CreateVm word_stride 3", () -> vms().createVm(create(vm().setWorkload(WorkloadSpec
                .newBuilder().setWordStride(3)))), bad, "word_stride", "3", "power of two"));
        l.add(c("CreateVm word_stride 1024", () -> vms().createVm(create(vm().setWorkload(WorkloadSpec
                .newBuilder().setWordStride(1024)))), bad, "word_stride", "1024"));
        l.add(c("CreateVm dirty rate 2^64-1", () -> vms().createVm(create(vm().setWorkload(WorkloadSpec.newBuilder()
                .setDirtyRateBytesPerSecond(-1)))), bad, "dirty_rate_bytes_per_second", "18446744073709551615"));
        l.add(c("CreateVm negative report period", () -> vms().createVm(create(vm().setWorkload(WorkloadSpec
                .newBuilder().setProgressReportPeriod(Duration.newBuilder().setSeconds(-1))))), bad,
                "progress_report_period"));
        l.add(c("CreateVm invalid Duration", () -> vms().createVm(create(vm().setWorkload(WorkloadSpec.newBuilder()
                .setProgressReportPeriod(Duration.newBuilder().setSeconds(1).setNanos(-5))))), bad,
                "progress_report_period", "not a valid"));
        l.add(c("ListVms page_size -1", () -> vms().listVms(ListVmsRequest.newBuilder().setPageSize(-1).build()), bad,
                "page_size"));
        l.add(c("ListVms huge token", () -> vms().listVms(ListVmsRequest.newBuilder().setPageToken("t".repeat(10_000))
                .build()), bad, "page_token"));

        // CreateMigration
        l.add(c("CreateMigration without migration", () -> migrations().createMigration(CreateMigrationRequest
                .newBuilder().setMigrationId("a").build()), bad, "migration is required"));
        l.add(c("CreateMigration bad id", () -> migrations().createMigration(CreateMigrationRequest.newBuilder()
                .setMigrationId("a/b").setMigration(mig()).build()), bad, "migration_id"));
        l.add(c("CreateMigration no vm", () -> migrations().createMigration(createMig(mig().clearVm())), bad,
                "migration.vm", "required"));
        l.add(c("CreateMigration malformed vm", () -> migrations().createMigration(createMig(mig().setVm(HUGE + "/"))),
                bad, "migration.vm"));
        l.add(c("CreateMigration bad destination", () -> migrations().createMigration(createMig(mig()
                .setDestinationAddress("dns:///x:1"))), bad, "destination_address", "host:port"));
        l.add(c("CreateMigration huge destination", () -> migrations().createMigration(createMig(mig()
                .setDestinationAddress("h".repeat(60_000) + ":1"))), bad, "destination_address"));
        l.add(c("CreateMigration bad destination_vm", () -> migrations().createMigration(createMig(mig()
                .setDestinationVm("web"))), bad, "destination_vm"));
        l.add(c("CreateMigration unknown mode", () -> migrations().createMigration(createMig(mig().setModeValue(42))),
                bad, "mode", "42"));
        l.add(c("CreateMigration unknown on_no_convergence", () -> migrations().createMigration(createMig(mig()
                .setPolicy(MigrationPolicy.newBuilder().setOnNoConvergenceValue(9)))), bad, "on_no_convergence", "9"));
        l.add(c("CreateMigration unknown page_compression", () -> migrations().createMigration(createMig(mig()
                .setPolicy(MigrationPolicy.newBuilder().setPageCompressionValue(9)))), bad, "page_compression", "9"));
        l.add(c("CreateMigration data_streams 2^32-1", () -> migrations().createMigration(createMig(mig()
                .setPolicy(MigrationPolicy.newBuilder().setDataStreams(-1)))), bad, "data_streams", "4294967295"));
        l.add(c("CreateMigration negative max_downtime", () -> migrations().createMigration(createMig(mig()
                .setPolicy(MigrationPolicy.newBuilder().setMaxDowntime(Duration.newBuilder().setSeconds(-1))))), bad,
                "max_downtime"));
        l.add(c("CreateMigration bandwidth 2^64-1", () -> migrations().createMigration(createMig(mig()
                .setPolicy(MigrationPolicy.newBuilder().setBandwidthLimitBytesPerSecond(-1)))), bad,
                "bandwidth_limit_bytes_per_second", "18446744073709551615"));
        l.add(c("WatchMigration negative interval", () -> migrations().watchMigration(WatchMigrationRequest.newBuilder()
                .setName("migrations/ghost").setProgressInterval(Duration.newBuilder().setSeconds(-1)).build())
                .hasNext(), bad, "progress_interval"));
        l.add(c("ResumeMigration bad address", () -> migrations().resumeMigration(ResumeMigrationRequest.newBuilder()
                .setName("migrations/ghost").setDestinationAddress("nope").build()), bad, "destination_address"));
        l.add(c("ListMigrations page_size -1", () -> migrations().listMigrations(ListMigrationsRequest.newBuilder()
                .setPageSize(-1).build()), bad, "page_size"));

        // NegotiateMigration
        l.add(c("Negotiate without proposed", () -> migrations().negotiateMigration(negotiate(config()).toBuilder()
                .clearProposed().build()), bad, "proposed is required"));
        l.add(c("Negotiate malformed source_vm", () -> migrations().negotiateMigration(negotiate(config()).toBuilder()
                .setSourceVm("web").build()), bad, "source_vm"));
        l.add(c("Negotiate bad destination_vm_id", () -> migrations().negotiateMigration(negotiate(config())
                .toBuilder().setDestinationVmId("A").build()), bad, "destination_vm_id"));
        l.add(c("Negotiate without source_address", () -> migrations().negotiateMigration(negotiate(config())
                .toBuilder().clearSourceAddress().build()), bad, "source_address"));
        l.add(c("Negotiate vcpu_count 0", () -> migrations().negotiateMigration(negotiate(config().setVcpuCount(0))),
                bad, "vcpu_count", "at least 1"));
        l.add(c("Negotiate no regions", () -> migrations().negotiateMigration(negotiate(config()
                .clearMemoryRegions())), bad, "memory_regions"));
        l.add(c("Negotiate region of 2^62", () -> migrations().negotiateMigration(negotiate(config()
                .setMemoryRegions(0, MemoryRegion.newBuilder().setSizeBytes(1L << 62)))), bad, "size_bytes",
                "4611686018427387904"));
        l.add(c("Negotiate region of 0", () -> migrations().negotiateMigration(negotiate(config()
                .setMemoryRegions(0, MemoryRegion.newBuilder().setSizeBytes(0)))), bad, "size_bytes", "0"));
        l.add(c("Negotiate regions over 32 GiB", () -> migrations().negotiateMigration(negotiate(config()
                .setMemoryRegions(0, MemoryRegion.newBuilder().setSizeBytes(32 * GIB))
                .addMemoryRegions(MemoryRegion.newBuilder().setSizeBytes(GIB).setSlot(1)))), bad, "add up"));
        l.add(c("Negotiate unknown mode", () -> migrations().negotiateMigration(negotiate(config().setModeValue(17))),
                bad, "mode", "17"));
        l.add(c("Negotiate unknown backend", () -> migrations().negotiateMigration(negotiate(config()
                .setBackendValue(5))), bad, "backend", "5"));
        l.add(c("Negotiate data_stream_count 0", () -> migrations().negotiateMigration(negotiate(config()
                .setDataStreamCount(0))), bad, "data_stream_count"));
        l.add(c("Negotiate postcopy without pager", () -> migrations().negotiateMigration(negotiate(config()
                .setMode(dev.ferry.v1.MigrationMode.POSTCOPY))), bad, "postcopy_pager_address"));
        l.add(c("Negotiate duplicate section", () -> migrations().negotiateMigration(negotiate(config()
                .addStateSections(StateSectionVersion.newBuilder().setName("kvm.vm").setVersion(1)
                        .setMinReaderVersion(1))
                .addStateSections(StateSectionVersion.newBuilder().setName("kvm.vm").setVersion(1)
                        .setMinReaderVersion(1)))), bad, "twice"));
        l.add(c("Negotiate min_reader above version", () -> migrations().negotiateMigration(negotiate(config()
                .addStateSections(StateSectionVersion.newBuilder().setName("kvm.vm").setVersion(1)
                        .setMinReaderVersion(2)))), bad, "min_reader_version"));

        l.add(c("UpdateMigration without migration", () -> migrations().updateMigration(
                dev.ferry.v1.UpdateMigrationRequest.getDefaultInstance()), bad, "migration is required"));
        l.add(c("UpdateMigration without update_mask", () -> migrations().updateMigration(
                dev.ferry.v1.UpdateMigrationRequest.newBuilder().setMigration(dev.ferry.v1.Migration.newBuilder()
                        .setName("migrations/ok")).build()), bad, "update_mask"));
        l.add(c("UpdateMigration of the mode", () -> migrations().updateMigration(
                dev.ferry.v1.UpdateMigrationRequest.newBuilder().setMigration(dev.ferry.v1.Migration.newBuilder()
                        .setName("migrations/ok")).setUpdateMask(com.google.protobuf.FieldMask.newBuilder()
                        .addPaths("mode")).build()), bad, "cannot change", "mode"));
        l.add(c("UpdateMigration bad name", () -> migrations().updateMigration(
                dev.ferry.v1.UpdateMigrationRequest.newBuilder().setMigration(dev.ferry.v1.Migration.newBuilder()
                        .setName("vms/x")).setUpdateMask(com.google.protobuf.FieldMask.newBuilder()
                        .addPaths("policy.bandwidth_limit_bytes_per_second")).build()), bad, "migration.name"));

        // Snapshot directories: never outside the agent's snapshot directory, checked before any lookup.
        for (String dir : new String[] {"", "../etc", "a/../../b", "a b", "a\\b", "x".repeat(256), "a\nb", "$(id)"}) {
            String q = "'" + dir.replace("\n", "\\n") + "'";
            l.add(c("SnapshotVm dir " + q, () -> vms().snapshotVm(SnapshotVmRequest.newBuilder().setName("vms/ok")
                    .setSnapshotDirectory(dir).build()), bad, "snapshot_directory"));
            l.add(c("RestoreVm dir " + q, () -> vms().restoreVm(RestoreVmRequest.newBuilder()
                    .setSnapshotDirectory(dir).build()), bad, "snapshot_directory"));
        }
        l.add(c("RestoreVm bad vm_id", () -> vms().restoreVm(RestoreVmRequest.newBuilder().setVmId("Web")
                .setSnapshotDirectory("s1").build()), bad, "vm_id"));
        l.add(c("RestoreVm without a snapshot directory on the agent", () -> vms().restoreVm(RestoreVmRequest
                .newBuilder().setSnapshotDirectory("s1").build()), Status.Code.FAILED_PRECONDITION, "--snapshot-dir"));

        // Incoming-side calls
        String m = "migrations/ok";
        l.add(c("TransferDeviceState without state", () -> migrations().transferDeviceState(TransferDeviceStateRequest
                .newBuilder().setMigration(m).build()), bad, "state is required"));
        l.add(c("CompleteIncomingMigration unknown digest algorithm", () -> migrations().completeIncomingMigration(
                CompleteIncomingMigrationRequest.newBuilder().setMigration(m).setSourceMemoryDigest(MemoryDigest
                        .newBuilder().setAlgorithmValue(3).setValue(ByteString.copyFrom(new byte[8]))).build()), bad,
                "algorithm", "3"));
        l.add(c("CompleteIncomingMigration 7-byte digest", () -> migrations().completeIncomingMigration(
                CompleteIncomingMigrationRequest.newBuilder().setMigration(m).setSourceMemoryDigest(MemoryDigest
                        .newBuilder().setAlgorithm(MemoryDigest.Algorithm.XXH3_64_PAGE_SUM)
                        .setValue(ByteString.copyFrom(new byte[7]))).build()), bad, "8 bytes"));
        l.add(c("CompleteIncomingMigration digest with postcopy", () -> migrations().completeIncomingMigration(
                CompleteIncomingMigrationRequest.newBuilder().setMigration(m).setPostcopy(true).setSourceMemoryDigest(
                        MemoryDigest.newBuilder().setAlgorithm(MemoryDigest.Algorithm.XXH3_64_PAGE_SUM)
                                .setValue(ByteString.copyFrom(new byte[8]))).build()), bad, "postcopy"));
        l.add(c("ResumeIncomingMigration without pager", () -> migrations().resumeIncomingMigration(
                ResumeIncomingMigrationRequest.newBuilder().setMigration(m).build()), bad, "postcopy_pager_address"));
        return l.stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void badInputIsRefusedWithTheDocumentedCodeAndABoundedMessage(Case k) {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> k.call().accept(null));
        String d = String.valueOf(e.getStatus().getDescription());
        assertEquals(k.code(), e.getStatus().getCode(), d);
        for (String s : k.mustContain()) {
            assertTrue(d.contains(s), "'" + s + "' in: " + d);
        }
        assertTrue(d.length() <= MAX_MESSAGE, d.length() + " characters: " + d.substring(0, Math.min(200, d.length())));
        assertFalse(d.contains("x".repeat(BoundedText.MAX_QUOTED + 1)), "quotes at most 128 characters");
    }

    @Test
    void nothingWasCreatedByAnyOfThem() {
        assertTrue(agent.vms().list().isEmpty());
        assertEquals(0, migrations().listMigrations(ListMigrationsRequest.getDefaultInstance()).getMigrationsCount());
    }
}
