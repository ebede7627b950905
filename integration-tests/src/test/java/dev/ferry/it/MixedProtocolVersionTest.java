package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationStatistics;
import dev.ferry.vm.Backend;
import org.junit.jupiter.api.Test;

/**
 * A rolling upgrade: a source agent started with the hidden {@code --protocol-version 1} (the previous release)
 * migrates to a current destination; version 1 has no verification after the resume, so the digest compared
 * before the resume is the whole check.
 */
class MixedProtocolVersionTest {
    @Test
    void aVersionOneSourceMigratesToACurrentDestination() throws Exception {
        Backend backend = Backend.PROCESS;
        BackendTestSupport.assume(backend);
        AgentProcess src = Agents.start("v1-source", backend, "--protocol-version", "1");
        AgentProcess dst = Agents.start("v2-destination", backend);
        try {
            String vm = Agents.createVm(src, "mixed", 256 * MIB, 64 * MIB, 256 * 1024, false).getName();
            Migration end = Agents.watchToEnd(src, Agents.startMigration(src, dst, "mixed", vm, MigrationMode.PRECOPY,
                    Agents.policy().build()).getName());
            assertEquals(Migration.Phase.COMPLETED, end.getPhase(), end.getError().getMessage());
            MigrationStatistics st = end.getStatistics();
            assertEquals(MigrationStatistics.VerificationMethod.DIGEST_BEFORE_RESUME, st.getVerificationMethod());
            assertTrue(st.getMemoryVerified(), "the destination compared the digest before the resume: " + st);
            assertEquals(0, st.getPagesCompared());
            assertFalse(Agents.hasVm(src, vm));
            Agents.assertGuestRunsIntact(dst, end.getDestinationVm());
        } finally {
            Agents.stop(src, dst);
        }
    }
}
