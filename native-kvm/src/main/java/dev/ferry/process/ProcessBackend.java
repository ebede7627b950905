package dev.ferry.process;

import dev.ferry.guest.WorkloadLibrary;
import dev.ferry.linux.PagemapScanner;
import dev.ferry.state.SectionSchema;
import dev.ferry.vm.Backend;
import dev.ferry.vm.GuestBackend;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.HostCapabilities;
import dev.ferry.vm.HostTsc;
import dev.ferry.vm.VmConfig;
import dev.ferry.vm.VmShape;
import java.util.List;
import java.util.Optional;
import java.util.function.Consumer;

/**
 * Guests as native code in host threads ({@link ProcessVm}): no /dev/kvm, the same workload, memory, devices
 * and migration engine. Needs the workload library, userfaultfd with asynchronous write-protect and
 * PAGEMAP_SCAN (Linux 6.7+); {@link #open()} checks all three once and measures this host's TSC rate.
 */
public final class ProcessBackend implements GuestBackend {
    private final HostCapabilities capabilities;

    private ProcessBackend(int tscKhz) {
        // A process guest reads the host's TSC: nothing can make it tick at another rate.
        this.capabilities = new HostCapabilities(List.of(), new HostTsc(tscKhz, false), true);
    }

    /** Every section a process guest saves. */
    public static List<SectionSchema<?>> schemas() {
        return ProcessVm.schemas();
    }

    /** @throws IllegalStateException saying what is missing ({@link #unavailableReason()}) */
    public static ProcessBackend open() {
        unavailableReason().ifPresent(why -> {
            throw new IllegalStateException(why);
        });
        return new ProcessBackend(TscRate.measureKhz());
    }

    /** Why a process guest cannot run here (no workload library, userfaultfd or PAGEMAP_SCAN), or empty. */
    public static Optional<String> unavailableReason() {
        if (!WorkloadLibrary.isLoaded()) {
            try {
                WorkloadLibrary.requireLoaded();
            } catch (IllegalStateException e) {
                return Optional.of(e.getMessage());
            }
        }
        return PagemapScanner.unavailableReason();
    }

    @Override
    public Backend kind() {
        return Backend.PROCESS;
    }

    @Override
    public HostCapabilities capabilities() {
        return capabilities;
    }

    @Override
    public List<SectionSchema<?>> stateSchemas() {
        return schemas();
    }

    @Override
    public GuestVm create(VmConfig config, Consumer<String> console) {
        return ProcessVm.create(config, capabilities.tsc().khz(), console);
    }

    /** The guest's clock runs at this host's TSC rate: a source at another rate is refused at negotiation. */
    @Override
    public GuestVm createIncoming(VmShape shape, Consumer<String> console) {
        return ProcessVm.createIncoming(shape, capabilities.tsc().khz(), console);
    }
}
