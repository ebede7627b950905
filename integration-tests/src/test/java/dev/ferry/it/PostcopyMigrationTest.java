package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.v1.CancelMigrationRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.SwitchToPostcopyRequest;
import dev.ferry.vm.Backend;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/** Postcopy and hybrid between two agent processes, each ending with the guest verified on the destination. */
@ParameterizedClass(name = "on {0}")
@EnumSource(Backend.class)
class PostcopyMigrationTest {
    @Parameter
    Backend backend;
    static AgentProcess src;
    static AgentProcess dst;

    @BeforeParameterizedClassInvocation
    static void agents(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        src = Agents.start("pc-source", backend);
        dst = Agents.start("pc-destination", backend);
    }

    /** Each test leaves its guest running on the destination (4 busy vCPUs in one): delete them before the next. */
    @AfterEach
    void deleteGuests() {
        Agents.deleteVms(src);
        Agents.deleteVms(dst);
    }

    @AfterParameterizedClassInvocation
    static void stop() throws Exception {
        Agents.stop(src, dst);
        src = null;
        dst = null;
    }

    private static void assertMovedByPostcopy(Migration m, String vm) {
        assertEquals(Migration.Phase.COMPLETED, m.getPhase(), m.getError().getMessage());
        assertTrue(m.getStatistics().hasPostcopy(), "the migration went through postcopy");
        assertTrue(m.getStatistics().getMemoryVerified(), "digest of the pages placed equals the source's");
        assertTrue(m.getStatistics().getPostcopy().getUnwrittenPagesVerified(),
                "pages the guest did not write since resuming equal the source's, read back on the destination");
        assertFalse(Agents.hasVm(src, vm), "the source released the VM");
        Agents.assertGuestRunsIntact(dst, m.getDestinationVm());
    }

    @Test
    void idleGuest() {
        String vm = Agents.createVm(src, "pc-idle", 256 * MIB, 64 * MIB, 0, false).getName();
        Migration end = Agents.watchToEnd(src, Agents.startMigration(src, dst, "pc-idle", vm, MigrationMode.POSTCOPY,
                Agents.policy().build()).getName());
        assertMovedByPostcopy(end, vm);
        assertTrue(end.getStatistics().getPostcopy().getPageFaults() > 0, "the guest faulted pages in");
    }

    @Test
    void faultsAreServedWhileThePushIsStillFarFromDone() {
        // The push is held to 2 MiB/s: 32 MiB would take 16 s. The guest's self-check on the destination
        // touches all of them; it can only finish early if each fault is answered by the source's pager.
        String vm = Agents.createVm(src, "pc-faults", 128 * MIB, 32 * MIB, 0, false).getName();
        Migration m = Agents.startMigration(src, dst, "pc-faults", vm, MigrationMode.POSTCOPY,
                Agents.policy().setBandwidthLimitBytesPerSecond(2 * MIB).setDataStreams(1).build());
        Migration running = Agents.watchUntil(src, m.getName(), x -> x.getPhase() == Migration.Phase.POSTCOPY);
        var check = Agents.vms(dst).checkVmMemory(dev.ferry.v1.CheckVmMemoryRequest.newBuilder()
                .setName(running.getDestinationVm()).build());
        assertEquals(0, check.getWrongPages());
        Migration now = Agents.migrations(src).getMigration(dev.ferry.v1.GetMigrationRequest.newBuilder()
                .setName(m.getName()).build());
        assertEquals(Migration.Phase.POSTCOPY, now.getPhase(), "the push is still running");
        assertTrue(now.getProgress().getBytesSent() < 32 * MIB, // with faults unanswered: the whole working set
                "the check finished long before the push could send the working set: faults were served (pushed "
                        + now.getProgress().getBytesSent() + " bytes)");
        assertMovedByPostcopy(Agents.watchToEnd(src, m.getName()), vm);
    }

    @Test
    void writeHeavyGuestOnFourVcpusFaultingAtOnce() {
        String vm = Agents.createVm(src, "pc-storm", 4, 256 * MIB, 96 * MIB, 0, true).getName();
        Migration end = Agents.watchToEnd(src, Agents.startMigration(src, dst, "pc-storm", vm, MigrationMode.POSTCOPY,
                Agents.policy().build()).getName());
        assertMovedByPostcopy(end, vm);
        assertTrue(end.getStatistics().getPostcopy().getPagesWrittenSinceResume() > 0,
                "the check left out what the guest wrote on the destination");
    }

    @Test
    void hybridSwitchesWhenPrecopyCannotConverge() {
        String vm = Agents.createVm(src, "hy-auto", 256 * MIB, 64 * MIB, 0, true).getName();
        MigrationPolicy p = Agents.policy().setBandwidthLimitBytesPerSecond(64 * MIB).setMaxRounds(2)
                .setOnNoConvergence(MigrationPolicy.NoConvergenceAction.SWITCH_TO_POSTCOPY)
                .setMaxDowntime(com.google.protobuf.Duration.newBuilder().setNanos(1_000_000)).build();
        Migration end = Agents.watchToEnd(src, Agents.startMigration(src, dst, "hy-auto", vm, MigrationMode.HYBRID, p)
                .getName());
        assertMovedByPostcopy(end, vm);
        assertTrue(end.getStatistics().getRounds() >= 2, "precopy ran first");
    }

    @Test
    void hybridSwitchesWhenAsked() {
        String vm = Agents.createVm(src, "hy-manual", 256 * MIB, 64 * MIB, 20 * MIB, false).getName();
        MigrationPolicy slow = Agents.policy().setBandwidthLimitBytesPerSecond(16 * MIB).build();
        Migration m = Agents.startMigration(src, dst, "hy-manual", vm, MigrationMode.HYBRID, slow);
        Agents.watchUntil(src, m.getName(), x -> x.getPhase() == Migration.Phase.PRECOPY && x.getProgress().getRound() >= 1);
        Agents.migrations(src).switchToPostcopy(SwitchToPostcopyRequest.newBuilder().setName(m.getName()).build());
        assertMovedByPostcopy(Agents.watchToEnd(src, m.getName()), vm);
    }

    @Test
    void cancelOnceTheDestinationRunsTheGuestIsRefused() {
        String vm = Agents.createVm(src, "pc-nocancel", 256 * MIB, 128 * MIB, 0, false).getName();
        Migration m = Agents.startMigration(src, dst, "pc-nocancel", vm, MigrationMode.POSTCOPY,
                Agents.policy().setBandwidthLimitBytesPerSecond(32 * MIB).build());
        Agents.watchUntil(src, m.getName(), x -> x.getPhase() == Migration.Phase.POSTCOPY);
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> Agents.migrations(src)
                .cancelMigration(CancelMigrationRequest.newBuilder().setName(m.getName()).build()));
        assertEquals(Status.Code.FAILED_PRECONDITION, e.getStatus().getCode());
        assertTrue(e.getStatus().getDescription().contains("split"), e.getStatus().getDescription());
        assertMovedByPostcopy(Agents.watchToEnd(src, m.getName()), vm);
    }
}
