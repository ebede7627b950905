package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.v1.Migration;
import dev.ferry.vm.Backend;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** The destination dies in the middle of precopy: the source notices and the guest never stops. */
class DestinationFailureTest {
    @ParameterizedTest(name = "on {0}")
    @EnumSource(Backend.class)
    void destinationKilledMidPrecopy(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        try (AgentProcess src = Agents.start("kill-source", backend);
                AgentProcess dst = Agents.start("kill-destination", backend)) {
            String vm = Agents.createVm(src, "survivor", 256 * MIB, 128 * MIB, 10 * MIB, false).getName();
            Migration m = Agents.startMigration(src, dst, "doomed", vm,
                    Agents.policy().setBandwidthLimitBytesPerSecond(8 * MIB).build());
            Agents.watchUntil(src, m.getName(), x -> x.getPhase() == Migration.Phase.PRECOPY && x.getProgress().getRound() >= 1);
            dst.kill();
            Migration end = Agents.watchToEnd(src, m.getName());
            assertEquals(Migration.Phase.FAILED, end.getPhase());
            Agents.assertGuestRunsIntact(src, vm);
        }
    }
}
