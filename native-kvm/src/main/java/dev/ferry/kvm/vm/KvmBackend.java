package dev.ferry.kvm.vm;

import dev.ferry.kvm.sys.KvmCpuidEntry2;
import dev.ferry.linux.Userfaultfd;
import dev.ferry.state.SectionSchema;
import dev.ferry.vm.Backend;
import dev.ferry.vm.CpuidLeaf;
import dev.ferry.vm.GuestBackend;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.HostCapabilities;
import dev.ferry.vm.VmConfig;
import dev.ferry.vm.VmShape;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/** Guests as KVM micro-VMs ({@link MicroVm}). Opening it proves /dev/kvm works and probes the host once. */
public final class KvmBackend implements GuestBackend {
    private final HostCapabilities capabilities;

    /** @throws dev.ferry.linux.NativeException if /dev/kvm cannot be opened or a VM cannot be created */
    public KvmBackend() {
        List<CpuidLeaf> cpuid = new ArrayList<>();
        for (KvmCpuidEntry2 e : MicroVm.supportedCpuid()) {
            cpuid.add(new CpuidLeaf(e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx));
        }
        java.util.Optional<String> noPostcopy = Userfaultfd.postcopyUnavailableReason();
        noPostcopy.ifPresent(why -> System.getLogger(KvmBackend.class.getName()).log(System.Logger.Level.WARNING,
                "KVM guests migrate by precopy only here (postcopy and hybrid are not offered): {0}", why));
        this.capabilities = new HostCapabilities(cpuid, MicroVm.hostTsc(), noPostcopy.isEmpty());
    }

    @Override
    public Backend kind() {
        return Backend.KVM;
    }

    @Override
    public HostCapabilities capabilities() {
        return capabilities;
    }

    @Override
    public List<SectionSchema<?>> stateSchemas() {
        return MicroVm.schemas();
    }

    @Override
    public GuestVm create(VmConfig config, Consumer<String> console) {
        return MicroVm.create(config, console);
    }

    @Override
    public GuestVm createIncoming(VmShape shape, Consumer<String> console) {
        return MicroVm.createIncoming(shape, console);
    }
}
