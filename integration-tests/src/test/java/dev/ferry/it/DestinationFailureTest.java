package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.ferry.control.agent.AgentProcess;
import dev.ferry.kvm.sys.KvmTestSupport;
import dev.ferry.v1.Migration;
import org.junit.jupiter.api.Test;

/** The destination dies in the middle of precopy: the source notices and the guest never stops. */
class DestinationFailureTest {
    @Test
    void destinationKilledMidPrecopy() throws Exception {
        KvmTestSupport.assumeKvm();
        try (AgentProcess src = Agents.start("kill-source"); AgentProcess dst = Agents.start("kill-destination")) {
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
