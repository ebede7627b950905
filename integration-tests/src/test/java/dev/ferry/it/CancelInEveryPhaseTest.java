package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.v1.CancelMigrationRequest;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.GetMigrationRequest;
import dev.ferry.v1.Migration;
import dev.ferry.vm.Backend;
import io.grpc.StatusRuntimeException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Cancel in the phases too short to hit by timing: a stand-in destination holds the migration in
 * NEGOTIATING or DEVICE_STATE (the other phases are covered in PrecopyMigrationTest). Each time the
 * source guest must come out running and intact, and the destination must be told to abort.
 */
@ParameterizedClass(name = "on {0}")
@EnumSource(Backend.class)
class CancelInEveryPhaseTest {
    @Parameter
    Backend backend;
    static AgentProcess src;

    @BeforeParameterizedClassInvocation
    static void agent(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        src = Agents.start("cancel-source", backend);
    }

    @AfterParameterizedClassInvocation
    static void stop() throws Exception {
        Agents.stop(src);
        src = null;
    }

    private static CompletableFuture<Object> create(String id, String vm, String destination) {
        return CompletableFuture.supplyAsync(() -> {
            try {
                return Agents.migrations(src).createMigration(CreateMigrationRequest.newBuilder().setMigrationId(id)
                        .setMigration(Migration.newBuilder().setVm(vm).setDestinationAddress(destination)).build());
            } catch (StatusRuntimeException e) {
                return e;
            }
        });
    }

    @Test
    void cancelWhileNegotiating() throws Exception {
        String vm = Agents.createVm(src, "c-neg", 128 * MIB, 16 * MIB, 4 * MIB, false).getName();
        try (FakeDestination dst = new FakeDestination()) {
            CompletableFuture<Object> creating = create("c-neg", vm, dst.controlAddress());
            assertTrue(dst.negotiateEntered.await(30, TimeUnit.SECONDS));
            assertEquals(Migration.Phase.NEGOTIATING, Agents.migrations(src)
                    .getMigration(GetMigrationRequest.newBuilder().setName("migrations/c-neg").build()).getPhase());
            // The destination never answers: the cancel must not wait for it.
            Migration cancelled = Agents.migrations(src)
                    .cancelMigration(CancelMigrationRequest.newBuilder().setName("migrations/c-neg").build());
            assertEquals(Migration.Phase.CANCELLED, cancelled.getPhase());
            assertTrue(creating.get(60, TimeUnit.SECONDS) instanceof StatusRuntimeException,
                    "CreateMigration fails: the migration was cancelled during its negotiation");
            assertFalse(dst.completeCalled);
            Agents.assertGuestRunsIntact(src, vm);
        }
    }

    @Test
    void cancelWhileSendingDeviceState() throws Exception {
        String vm = Agents.createVm(src, "c-dev", 128 * MIB, 16 * MIB, 4 * MIB, false).getName();
        try (FakeDestination dst = new FakeDestination()) {
            dst.releaseNegotiate.countDown();
            CompletableFuture<Object> creating = create("c-dev", vm, dst.controlAddress());
            assertTrue(creating.get(60, TimeUnit.SECONDS) instanceof Migration, "negotiation succeeds");
            assertTrue(dst.deviceStateEntered.await(60, TimeUnit.SECONDS), "precopy converged; device state is on its way");
            assertEquals(Migration.Phase.DEVICE_STATE, Agents.migrations(src)
                    .getMigration(GetMigrationRequest.newBuilder().setName("migrations/c-dev").build()).getPhase());
            // The destination holds the device state forever: the cancel interrupts the transfer.
            Migration cancelled = Agents.migrations(src)
                    .cancelMigration(CancelMigrationRequest.newBuilder().setName("migrations/c-dev").build());
            assertEquals(Migration.Phase.CANCELLED, cancelled.getPhase());
            assertTrue(dst.aborted.await(30, TimeUnit.SECONDS), "the destination was told to abort");
            assertFalse(dst.completeCalled, "the switchover never happened");
            Agents.assertGuestRunsIntact(src, vm); // paused for stop-and-copy, running again
        }
    }
}
