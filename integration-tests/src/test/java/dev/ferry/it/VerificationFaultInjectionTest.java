package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.v1.GetMigrationRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationStatistics;
import dev.ferry.v1.SwitchToPostcopyRequest;
import dev.ferry.vm.Backend;
import io.grpc.Status;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * A source agent started with {@code --inject-fault drop-dirty-page} leaves one stale page on the destination in
 * every mode; the verification after the resume must catch it, discard the destination's guest and give the VM
 * back to the source, running and whole.
 *
 * <p>The guests dirty 256 KiB/s (64 pages/s) of a 64 MiB working set: enough for stale pages at the switchover,
 * few enough that the guest is unlikely to rewrite the dropped page on the destination before the check there
 * ends (a page rewritten there is, by design, not compared: about 64 of 16384 pages per second of hashing).
 */
@ParameterizedClass(name = "on {0}")
@EnumSource(Backend.class)
class VerificationFaultInjectionTest {
    private static final long DIRTY_RATE = 256 * 1024;

    @Parameter
    Backend backend;
    static AgentProcess src;
    static AgentProcess dst;

    @BeforeParameterizedClassInvocation
    static void agents(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        src = Agents.start("inject-source", backend, "--inject-fault", "drop-dirty-page");
        dst = Agents.start("inject-destination", backend);
    }

    @AfterParameterizedClassInvocation
    static void stop() throws Exception {
        Agents.stop(src, dst);
        src = null;
        dst = null;
    }

    /** FAILED with DATA_LOSS, nothing claimed verified, the guest whole on the source and gone from the destination. */
    private static void assertRolledBack(Migration end, String vm) {
        assertEquals(Migration.Phase.FAILED, end.getPhase(), "the dropped page must be caught: " + end);
        assertEquals(Status.Code.DATA_LOSS.value(), end.getError().getCode(), end.getError().getMessage());
        assertTrue(end.getError().getMessage().contains("runs on the source again"), end.getError().getMessage());
        assertEquals(java.util.Optional.of("VERIFY"), dev.ferry.v1.MigrationErrors.step(end), end.getError().toString());
        MigrationStatistics st = end.getStatistics();
        assertFalse(st.getMemoryVerified());
        assertEquals(MigrationStatistics.VerificationMethod.UNWRITTEN_PAGES_AFTER_RESUME, st.getVerificationMethod());
        assertTrue(st.getPagesCompared() > 0, "pages were compared: " + st);
        Agents.assertGuestRunsIntact(src, vm);
        assertFalse(Agents.hasVm(dst, end.getDestinationVm()), "the destination discarded its copy");
        Migration there = Agents.migrations(dst).getMigration(GetMigrationRequest.newBuilder().setName(end.getName())
                .build());
        assertEquals(Migration.Phase.CANCELLED, there.getPhase(), "the destination's session was aborted: " + there);
    }

    @Test
    void precopyLeavesADirtyPageOutOfStopAndCopy() {
        String vm = Agents.createVm(src, "inj-pre", 256 * MIB, 64 * MIB, DIRTY_RATE, false).getName();
        Migration end = Agents.watchToEnd(src, Agents.startMigration(src, dst, "inj-pre", vm, MigrationMode.PRECOPY,
                Agents.policy().build()).getName());
        assertRolledBack(end, vm);
        assertTrue(end.getStatistics().getChunksDiffering() > 0,
                "precopy: the bytes sent arrived intact; only the comparison with the source's memory sees the loss");
    }

    @Test
    void postcopyLeavesAPageOutOfThePush() {
        String vm = Agents.createVm(src, "inj-post", 256 * MIB, 64 * MIB, DIRTY_RATE, false).getName();
        Migration end = Agents.watchToEnd(src, Agents.startMigration(src, dst, "inj-post", vm, MigrationMode.POSTCOPY,
                Agents.policy().build()).getName());
        assertRolledBack(end, vm);
        assertTrue(end.getStatistics().hasPostcopy(), "the guest ran on the destination by postcopy first");
    }

    @Test
    void hybridSwitchedToPostcopyKeepsAStalePage() {
        String vm = Agents.createVm(src, "inj-hyb", 256 * MIB, 64 * MIB, DIRTY_RATE, false).getName();
        Migration m = Agents.startMigration(src, dst, "inj-hyb", vm, MigrationMode.HYBRID, Agents.policy().build());
        Agents.migrations(src).switchToPostcopy(SwitchToPostcopyRequest.newBuilder().setName(m.getName()).build());
        Migration end = Agents.watchToEnd(src, m.getName());
        assertRolledBack(end, vm);
        assertTrue(end.getStatistics().hasPostcopy(), "the switch to postcopy took place");
    }

    @Test
    void withoutVerificationTheResultClaimsNothing() {
        String vm = Agents.createVm(src, "inj-off", 256 * MIB, 64 * MIB, DIRTY_RATE, false).getName();
        Migration end = Agents.watchToEnd(src, Agents.startMigration(src, dst, "inj-off", vm, MigrationMode.PRECOPY,
                Agents.policy().setVerifyMemory(false).build()).getName());
        assertEquals(Migration.Phase.COMPLETED, end.getPhase(), "nothing checks, so nothing fails: " + end);
        assertEquals(MigrationStatistics.VerificationMethod.NONE, end.getStatistics().getVerificationMethod());
        assertFalse(end.getStatistics().getMemoryVerified());
        assertEquals(0, end.getStatistics().getPagesCompared());
        assertFalse(Agents.hasVm(src, vm));
    }
}
