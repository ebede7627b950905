package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.control.agent.AgentProcess;
import dev.ferry.kvm.sys.KvmTestSupport;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.ResumeMigrationRequest;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Postcopy survives a cut data network: the pager and page links go through proxies the test cuts
 * after the destination resumed the guest. The migration pauses on both sides, the guest stays on
 * the destination, and ResumeMigration finishes the job with every page verified.
 */
class PostcopyRecoveryTest {
    @Test
    void cutAfterResumeThenResume() throws Exception {
        KvmTestSupport.assumeKvm();
        KvmTestSupport.assumeUserfaultfd();
        Path logs = Path.of("target", "agent-logs");
        Files.createDirectories(logs);
        long pid = ProcessHandle.current().pid();
        try (TcpProxy dataLink = new TcpProxy(); TcpProxy pagerLink = new TcpProxy();
                AgentProcess src = AgentProcess.start("rec-source", logs.resolve("rec-source-" + pid + ".log"), List.of(),
                        List.of("--advertise-pager", "127.0.0.1:" + pagerLink.port()));
                AgentProcess dst = AgentProcess.start("rec-destination", logs.resolve("rec-destination-" + pid + ".log"),
                        List.of(), List.of("--advertise-data", "127.0.0.1:" + dataLink.port()))) {
            pagerLink.target(src.pagerAddress());
            dataLink.target(dst.dataAddress());
            String vm = Agents.createVm(src, "rec", 128 * MIB, 32 * MIB, 0, false).getName();
            Migration m = Agents.startMigration(src, dst, "rec", vm, MigrationMode.POSTCOPY,
                    Agents.policy().setBandwidthLimitBytesPerSecond(2 * MIB).setDataStreams(1).build());
            Agents.watchUntil(src, m.getName(), x -> x.getPhase() == Migration.Phase.POSTCOPY);

            dataLink.cut();
            pagerLink.cut();
            Migration paused = Agents.watchUntil(src, m.getName(), x -> x.getPhase() == Migration.Phase.POSTCOPY_PAUSED);
            assertFalse(paused.getError().getMessage().isEmpty() && paused.getPhase() != Migration.Phase.POSTCOPY_PAUSED);
            assertTrue(Agents.hasVm(dst, paused.getDestinationVm()), "the guest stays on the destination");
            assertTrue(Agents.hasVm(src, vm), "the source keeps its copy: memory is split between the hosts");

            dataLink.restore();
            pagerLink.restore();
            Agents.migrations(src).resumeMigration(ResumeMigrationRequest.newBuilder().setName(m.getName()).build());
            Migration end = Agents.watchToEnd(src, m.getName());
            assertEquals(Migration.Phase.COMPLETED, end.getPhase(), end.getError().getMessage());
            assertTrue(end.getStatistics().getMemoryVerified(), "digest of the pages placed equals the source's");
            assertTrue(end.getStatistics().getPostcopy().getRecoveries() >= 1, "counted as a recovery");
            assertFalse(Agents.hasVm(src, vm));
            Agents.assertGuestRunsIntact(dst, end.getDestinationVm());
            assertEquals(dev.ferry.v1.Vm.State.RUNNING, Agents.vms(dst)
                    .getVm(GetVmRequest.newBuilder().setName(end.getDestinationVm()).build()).getState());
        }
    }
}
