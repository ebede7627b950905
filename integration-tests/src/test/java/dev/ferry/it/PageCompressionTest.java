package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.DeleteVmRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.MigrationPolicy.PageCompression;
import dev.ferry.v1.MigrationStatistics;
import dev.ferry.v1.Vm;
import dev.ferry.v1.WorkloadSpec;
import dev.ferry.vm.Backend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * LZ4 page compression between real agents: AUTO compresses a compressible guest on a capped link, LZ4 sends
 * incompressible pages raw and compressible ones compressed in postcopy's push too, NONE never compresses; every
 * guest lands whole and keeps its page shape.
 */
@ParameterizedClass(name = "on {0}")
@EnumSource(Backend.class)
class PageCompressionTest {
    @Parameter
    Backend backend;
    static AgentProcess src;
    static AgentProcess dst;

    @BeforeParameterizedClassInvocation
    static void agents(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        src = Agents.start("lz4-src", backend, "--no-warmup");
        dst = Agents.start("lz4-dst", backend, "--no-warmup");
    }

    @AfterParameterizedClassInvocation
    static void stop() throws Exception {
        Agents.stop(src, dst);
        src = null;
        dst = null;
    }

    /** 128 MiB guest writing 32 MiB at 2 MiB/s; one word in {@code wordStride} of each page is data. */
    private static String vm(String id, int wordStride) {
        return Agents.vms(src).createVm(CreateVmRequest.newBuilder().setVmId(id).setVm(Vm.newBuilder()
                .setMemoryBytes(128 * MIB).setVcpuCount(1).setWorkload(WorkloadSpec.newBuilder()
                        .setWorkingSetBytes(32 * MIB).setDirtyRateBytesPerSecond(2 * MIB).setWordStride(wordStride)))
                .build()).getName();
    }

    private static MigrationStatistics migrate(String id, String vm, MigrationPolicy policy, int wordStride) {
        return migrate(id, vm, MigrationMode.PRECOPY, policy, wordStride);
    }

    private static MigrationStatistics migrate(String id, String vm, MigrationMode mode, MigrationPolicy policy,
            int wordStride) {
        Migration end = Agents.watchToEnd(src, Agents.startMigration(src, dst, id, vm, mode, policy).getName());
        assertEquals(Migration.Phase.COMPLETED, end.getPhase(), end.getError().getMessage());
        assertTrue(end.getStatistics().getMemoryVerified(), "verified");
        Agents.assertGuestRunsIntact(dst, end.getDestinationVm());
        Vm moved = Agents.vms(dst).getVm(GetVmRequest.newBuilder().setName(end.getDestinationVm()).build());
        assertEquals(wordStride, moved.getWorkload().getWordStride(), "the guest keeps its page shape");
        Agents.vms(dst).deleteVm(DeleteVmRequest.newBuilder().setName(end.getDestinationVm()).build());
        return end.getStatistics();
    }

    @Test
    void autoCompressesACompressibleGuestOnACappedLink() {
        // 16 MiB/s: the stream waits for the limiter, so the link is the bottleneck and LZ4 pays. One stream, so
        // that its 32 batches make four decision windows (it starts raw).
        MigrationStatistics st = migrate("lz4-auto", vm("lz4-auto", 4),
                MigrationPolicy.newBuilder().setBandwidthLimitBytesPerSecond(16 * MIB).setDataStreams(1).build(), 4);
        assertTrue(st.getCompressedPages() > 0, st.toString());
        assertTrue(st.getCompressedBytes() < st.getCompressedPages() * 4096 / 2,
                "one word in four: blocks under half the pages' size: " + st);
    }

    @Test
    void postcopysBackgroundPushPlacesLz4Batches() {
        // The destination places decompressed pages with UFFDIO_COPY from a heap chunk, not a transport buffer.
        MigrationStatistics st = migrate("lz4-postcopy", vm("lz4-postcopy", 4), MigrationMode.POSTCOPY,
                MigrationPolicy.newBuilder().setPageCompression(PageCompression.LZ4).build(), 4);
        assertTrue(st.hasPostcopy(), st.toString());
        assertTrue(st.getCompressedPages() > 0, st.toString());
    }

    @Test
    void lz4SendsIncompressiblePagesAsTheyAre() {
        MigrationStatistics st = migrate("lz4-random", vm("lz4-random", 1),
                MigrationPolicy.newBuilder().setPageCompression(PageCompression.LZ4).build(), 1);
        // Only batches of the guest's own small pages (code, page tables, the generation table) shrink: the working
        // set's pages, nine tenths of what moves, go raw.
        assertTrue(st.getTransferredBytes() >= 32 * MIB, st.toString());
        assertTrue(st.getCompressedPages() * 4096 < st.getTransferredBytes() / 10, st.toString());
    }

    @Test
    void noneNeverCompresses() {
        MigrationStatistics st = migrate("lz4-none", vm("lz4-none", 4), MigrationPolicy.newBuilder()
                .setBandwidthLimitBytesPerSecond(16 * MIB).setPageCompression(PageCompression.NONE).build(), 4);
        assertEquals(0, st.getCompressedPages(), st.toString());
    }
}
