package dev.ferry.kvm.vm;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.guest.GuestAbi;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.kvm.sys.KvmTestSupport;
import dev.ferry.vm.VmConfig;
import dev.ferry.vm.VmShape;
import java.time.Duration;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * What only a KVM guest does; what every backend does is in {@link dev.ferry.vm.GuestVmTest}.
 */
class MicroVmTest {
    static final long MIB = 1 << 20;
    static final Duration T = Duration.ofSeconds(30);

    @BeforeEach
    void needKvm() {
        KvmTestSupport.assumeKvm();
    }

    static VmConfig config(int vcpus, long ws, long rate) {
        return new VmConfig(vcpus, 64 * MIB, 2, WorkloadSpec.of(ws, rate, false));
    }

    @Test
    void aGuestWithAnUnusableParameterBlockSaysSoAndKeepsRunning() throws Exception {
        try (MicroVm vm = MicroVm.create(config(1, 8 * MIB, 0), line -> { })) {
            // A working set past the end of memory: the workload core refuses it before touching it.
            vm.memory().putLong(GuestAbi.PARAMS_GPA + GuestAbi.P_WS_BASE, 64 * MIB);
            vm.start();
            assertThrows(IllegalStateException.class, () -> vm.probe().orElseThrow().awaitFillDone(T));
            assertTrue(vm.workloadPort().badParams());
            // The ring-3 guest spins counting: it still executes, it only refuses to touch memory.
            long c = vm.probe().orElseThrow().guestCounter();
            long deadline = System.nanoTime() + T.toNanos();
            while (vm.probe().orElseThrow().guestCounter() == c && System.nanoTime() < deadline) {
                Thread.onSpinWait();
            }
            assertTrue(vm.probe().orElseThrow().guestCounter() > c, "the guest still executes (it counts)");
            vm.throwIfFailed();
        }
    }

    @Test
    void itsShapeCarriesTheCpuidAndTscRateKvmGaveIt() {
        try (MicroVm vm = MicroVm.create(config(1, 8 * MIB, 0), line -> { })) {
            VmShape shape = vm.shape();
            assertFalse(shape.cpuid().isEmpty(), "KVM_SET_CPUID2 entries");
            assertTrue(shape.cpuid().stream().anyMatch(l -> l.function() == 0 && l.index() == 0), "vendor leaf");
            assertTrue(shape.tscKhz() > 100_000, "KVM_GET_TSC_KHZ: " + shape.tscKhz());
        }
    }
}
