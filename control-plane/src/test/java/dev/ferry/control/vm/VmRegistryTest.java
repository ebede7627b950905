package dev.ferry.control.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.backends.Backends;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.v1.Vm;
import dev.ferry.vm.Backend;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.VmConfig;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** A VM taken out with removeLater is gone at once but holds its share of the host until it is closed. */
class VmRegistryTest {
    private static final long MIB = 1 << 20;
    private static final long GIB = 1L << 30;

    private static GuestVm create(Backend backend) {
        return Backends.open(Backends.Choice.valueOf(backend.name())).preferred()
                .create(new VmConfig(1, 64 * MIB, 1, WorkloadSpec.of(MIB, 0, false)), line -> { });
    }

    @ParameterizedTest(name = "on {0}")
    @EnumSource(Backend.class)
    void aVmTakenOutCountsAgainstTheLimitsUntilItIsClosed(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        VmRegistry vms = new VmRegistry(new GuestAdmission.Limits(1, 128 * MIB), HostMemory.of(64 * GIB, 64 * GIB));
        try {
            GuestVm vm = create(backend);
            vm.start();
            vms.add("vms/a", vm, Vm.State.RUNNING);
            Runnable close = vms.removeLater("vms/a");

            assertFalse(vms.exists("vms/a"), "no call finds it any more");
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> vms.admit("vms/b", 64 * MIB));
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode(), "still mapped: still counted");
            vm.pause(); // not closed yet

            close.run();
            assertThrows(IllegalStateException.class, vm::start, "closed");
            vms.admit("vms/b", 64 * MIB).close();
            close.run(); // a second time does nothing
        } finally {
            vms.close();
        }
    }

    @ParameterizedTest(name = "on {0}")
    @EnumSource(Backend.class)
    void closingTheRegistryClosesWhatWasTakenOutButNotClosed(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        VmRegistry vms = new VmRegistry();
        GuestVm vm = create(backend);
        vms.add("vms/a", vm, Vm.State.RUNNING);
        Runnable close = vms.removeLater("vms/a");
        vms.close();
        assertThrows(IllegalStateException.class, vm::start, "closed with the registry");
        close.run(); // the late close finds it closed and does nothing
    }
}
