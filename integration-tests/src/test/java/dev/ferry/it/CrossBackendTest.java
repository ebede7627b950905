package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.v1.IncompatibilityDetails;
import dev.ferry.v1.ListVmsRequest;
import dev.ferry.v1.Mismatch;
import dev.ferry.vm.Backend;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import org.junit.jupiter.api.Test;

/** A KVM guest cannot move to an agent that runs only process guests: refused at negotiation, nothing lost. */
class CrossBackendTest {
    @Test
    void aMigrationToAnotherBackendIsRefusedWithTheMismatchAndTheGuestStays() throws Exception {
        BackendTestSupport.assume(Backend.KVM);
        BackendTestSupport.assume(Backend.PROCESS);
        try (AgentProcess src = Agents.start("x-source", Backend.KVM);
                AgentProcess dst = Agents.start("x-destination", Backend.PROCESS)) {
            String vm = Agents.createVm(src, "x", 64 * MIB, 16 * MIB, 4 * MIB, false).getName();
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
                    () -> Agents.startMigration(src, dst, "x", vm, Agents.policy().build()));
            assertEquals(Status.Code.FAILED_PRECONDITION, e.getStatus().getCode());
            IncompatibilityDetails d = StatusProto.fromThrowable(e).getDetailsList().stream()
                    .filter(x -> x.is(IncompatibilityDetails.class)).findFirst().orElseThrow()
                    .unpack(IncompatibilityDetails.class);
            Mismatch m = d.getMismatchesList().stream().filter(x -> x.getField().equals("backend")).findFirst()
                    .orElseThrow(() -> new AssertionError(d.toString()));
            assertEquals("kvm", m.getSourceValue());
            assertEquals("[process]", m.getDestinationValue());
            assertTrue(e.getStatus().getDescription().contains("cannot run kvm guests"), e.getStatus().getDescription());
            assertTrue(Agents.vms(dst).listVms(ListVmsRequest.getDefaultInstance()).getVmsList().isEmpty(),
                    "the destination allocated nothing");
            Agents.assertGuestRunsIntact(src, vm);
            // As migration_service.proto says: no migration resource is kept when CreateMigration fails.
            StatusRuntimeException none = assertThrows(StatusRuntimeException.class, () -> Agents.migrations(src)
                    .getMigration(dev.ferry.v1.GetMigrationRequest.newBuilder().setName("migrations/x").build()));
            assertEquals(Status.Code.NOT_FOUND, none.getStatus().getCode());
        }
    }
}
