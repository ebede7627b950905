package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.v1.AutoConverge;
import dev.ferry.v1.CancelMigrationRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.MigrationPolicy.NoConvergenceAction;
import dev.ferry.vm.Backend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Auto-converge and mode AUTO between real agents: a guest that dirties faster than the (capped) link is throttled,
 * live in the progress stream, and a cancel gives it back running at full speed; AUTO reports what it picked and
 * why, and completes verified whichever mode it picked.
 */
@ParameterizedClass(name = "on {0}")
@EnumSource(Backend.class)
class AutoConvergeTest {
    @Parameter
    Backend backend;
    static AgentProcess src;
    static AgentProcess dst;

    @BeforeParameterizedClassInvocation
    static void agents(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        src = Agents.start("ac-src", backend, "--no-warmup");
        dst = Agents.start("ac-dst", backend, "--no-warmup");
    }

    @AfterParameterizedClassInvocation
    static void stop() throws Exception {
        Agents.stop(src, dst);
        src = null;
        dst = null;
    }

    /** Writes a 32 MiB working set as fast as it can: far faster than 16 MiB/s. */
    private static String busyVm(String id) {
        return Agents.createVm(src, id, 64 * MIB, 32 * MIB, 0, true).getName();
    }

    @Test
    void aGuestFasterThanTheLinkIsThrottledLiveAndACancelGivesItBackRunning() {
        String vm = busyVm("ac-busy");
        MigrationPolicy policy = MigrationPolicy.newBuilder().setBandwidthLimitBytesPerSecond(16 * MIB).setDataStreams(1)
                .setMaxRounds(1000).setOnNoConvergence(NoConvergenceAction.FAIL)
                .setAutoConverge(AutoConverge.newBuilder().setEnabled(true).setInitialPercent(20).setIncrementPercent(20)
                        .setMaxPercent(60)).build();
        Migration m = Agents.startMigration(src, dst, "ac-cancel", vm, MigrationMode.PRECOPY, policy);
        assertEquals(60, m.getPolicy().getAutoConverge().getMaxPercent(), "the policy as resolved");
        // Every round sends the whole working set and the guest rewrites all of it: hot rounds, so the throttle rises.
        Migration throttled = Agents.watchUntil(src, m.getName(), x -> x.getProgress().getCpuThrottlePercent() >= 40
                || x.getPhase() != Migration.Phase.PRECOPY);
        assertEquals(Migration.Phase.PRECOPY, throttled.getPhase(), throttled.getError().getMessage());
        assertEquals(40, throttled.getProgress().getCpuThrottlePercent());
        Migration cancelled = Agents.migrations(src).cancelMigration(CancelMigrationRequest.newBuilder()
                .setName(m.getName()).build());
        Migration end = Agents.watchToEnd(src, cancelled.getName());
        assertEquals(Migration.Phase.CANCELLED, end.getPhase());
        assertEquals(0, end.getProgress().getCpuThrottlePercent(), "no throttle once out of precopy");
        assertTrue(end.getStatistics().getMaxCpuThrottlePercent() >= 40, end.getStatistics().toString());
        Agents.assertGuestRunsIntact(src, vm); // running, not left paused by the throttle, memory intact
        Agents.vms(src).deleteVm(dev.ferry.v1.DeleteVmRequest.newBuilder().setName(vm).build());
    }

    @Test
    void modeAutoPicksPrecopyForAQuietGuest() {
        String vm = Agents.createVm(src, "ac-quiet", 64 * MIB, 16 * MIB, 1 << 20, false).getName();
        Migration end = Agents.watchToEnd(src, Agents.startMigration(src, dst, "ac-auto-quiet", vm, MigrationMode.AUTO,
                MigrationPolicy.getDefaultInstance()).getName());
        assertEquals(Migration.Phase.COMPLETED, end.getPhase(), end.getError().getMessage());
        assertEquals(MigrationMode.AUTO, end.getMode());
        assertTrue(end.getStatistics().getMemoryVerified());
        var choice = end.getModeChoice();
        assertEquals(MigrationMode.PRECOPY, choice.getMode(), choice.getReason());
        assertTrue(choice.getReason().startsWith("precopy meets max_downtime"), choice.getReason());
        assertTrue(choice.getTransferRateBytesPerSecond() > 0);
        assertTrue(choice.getPredictedTotalTime().getSeconds() > 0 || choice.getPredictedTotalTime().getNanos() > 0);
        Agents.assertGuestRunsIntact(dst, end.getDestinationVm());
        Agents.vms(dst).deleteVm(dev.ferry.v1.DeleteVmRequest.newBuilder().setName(end.getDestinationVm()).build());
    }

    @Test
    void modeAutoStartsPostcopyWhenPrecopyCannotMakeIt() {
        String vm = busyVm("ac-hot");
        MigrationPolicy policy = MigrationPolicy.newBuilder().setBandwidthLimitBytesPerSecond(16 * MIB).setDataStreams(1)
                .setMaxRounds(3).build();
        Migration end = Agents.watchToEnd(src, Agents.startMigration(src, dst, "ac-auto-hot", vm, MigrationMode.AUTO,
                policy).getName());
        assertEquals(Migration.Phase.COMPLETED, end.getPhase(), end.getError().getMessage());
        var choice = end.getModeChoice();
        assertEquals(MigrationMode.POSTCOPY, choice.getMode(), choice.getReason());
        assertTrue(end.getStatistics().hasPostcopy(), "it went through postcopy");
        assertTrue(end.getStatistics().getMemoryVerified());
        Agents.assertGuestRunsIntact(dst, end.getDestinationVm());
        Agents.vms(dst).deleteVm(dev.ferry.v1.DeleteVmRequest.newBuilder().setName(end.getDestinationVm()).build());
    }
}
