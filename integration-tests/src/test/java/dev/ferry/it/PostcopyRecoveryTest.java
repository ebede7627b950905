package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.ResumeMigrationRequest;
import dev.ferry.vm.Backend;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Postcopy survives a cut data network: the pager and page links go through proxies the test cuts
 * after the destination resumed the guest. The migration pauses on both sides, the guest stays on
 * the destination, and ResumeMigration finishes the job with every page verified. The destination's
 * control address is cut for good and given anew in ResumeMigration.
 */
class PostcopyRecoveryTest {
    @ParameterizedTest(name = "on {0}")
    @EnumSource(Backend.class)
    void cutAfterResumeThenResume(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        try (TcpProxy dataLink = new TcpProxy(); TcpProxy pagerLink = new TcpProxy(); TcpProxy controlLink = new TcpProxy();
                AgentProcess src = Agents.start("rec-source", backend, "--advertise-pager",
                        "127.0.0.1:" + pagerLink.port());
                AgentProcess dst = Agents.start("rec-destination", backend, "--advertise-data",
                        "127.0.0.1:" + dataLink.port())) {
            pagerLink.target(src.pagerAddress());
            dataLink.target(dst.dataAddress());
            controlLink.target(dst.controlAddress());
            String vm = Agents.createVm(src, "rec", 128 * MIB, 32 * MIB, 0, false).getName();
            Migration m = Agents.migrations(src).createMigration(CreateMigrationRequest.newBuilder().setMigrationId("rec")
                    .setMigration(Migration.newBuilder().setVm(vm).setDestinationAddress("127.0.0.1:" + controlLink.port())
                            .setMode(MigrationMode.POSTCOPY)
                            .setPolicy(Agents.policy().setBandwidthLimitBytesPerSecond(2 * MIB).setDataStreams(1)))
                    .build());
            Agents.watchUntil(src, m.getName(), x -> x.getPhase() == Migration.Phase.POSTCOPY);

            dataLink.cut();
            pagerLink.cut();
            controlLink.cut(); // for good: the destination comes back at another control address
            Migration paused = Agents.watchUntil(src, m.getName(), x -> x.getPhase() == Migration.Phase.POSTCOPY_PAUSED);
            assertFalse(paused.getError().getMessage().isEmpty() && paused.getPhase() != Migration.Phase.POSTCOPY_PAUSED);
            assertTrue(Agents.hasVm(dst, paused.getDestinationVm()), "the guest stays on the destination");
            assertTrue(Agents.hasVm(src, vm), "the source keeps its copy: memory is split between the hosts");

            dataLink.restore();
            pagerLink.restore();
            var refused = assertThrows(StatusRuntimeException.class, () -> Agents.migrations(src).resumeMigration(
                    ResumeMigrationRequest.newBuilder().setName(m.getName()).setDestinationAddress("no-port").build()));
            assertEquals(Status.Code.INVALID_ARGUMENT, refused.getStatus().getCode());
            Agents.migrations(src).resumeMigration(ResumeMigrationRequest.newBuilder().setName(m.getName())
                    .setDestinationAddress(dst.controlAddress()).build());
            Migration end = Agents.watchToEnd(src, m.getName());
            assertEquals(Migration.Phase.COMPLETED, end.getPhase(), end.getError().getMessage());
            assertEquals(dst.controlAddress(), end.getDestinationAddress(), "resumed at the new address");
            assertTrue(end.getStatistics().getMemoryVerified(), "digest of the pages placed equals the source's");
            assertTrue(end.getStatistics().getPostcopy().getUnwrittenPagesVerified(),
                    "pages the guest did not write since resuming equal the source's");
            assertTrue(end.getStatistics().getPostcopy().getRecoveries() >= 1, "counted as a recovery");
            assertFalse(Agents.hasVm(src, vm));
            Agents.assertGuestRunsIntact(dst, end.getDestinationVm());
            assertEquals(dev.ferry.v1.Vm.State.RUNNING, Agents.vms(dst)
                    .getVm(GetVmRequest.newBuilder().setName(end.getDestinationVm()).build()).getState());
        }
    }
}
