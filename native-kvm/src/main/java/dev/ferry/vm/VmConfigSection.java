package dev.ferry.vm;

import dev.ferry.guest.AccessPattern;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.kvm.state.v1.CpuidEntry;
import dev.ferry.kvm.state.v1.MemoryRegionState;
import dev.ferry.kvm.state.v1.VmConfigState;
import dev.ferry.kvm.state.v1.WorkloadConfig;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.state.RestorePhase;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateException;
import dev.ferry.state.Stateful;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;

/**
 * Section "vm.config": what the VM is (backend, vCPUs, memory slots, CPUID, TSC rate, workload). A
 * restore builds the target VM from it first; applying it then only checks that the target has that shape.
 */
public final class VmConfigSection implements Stateful<VmConfigState> {
    public static final SectionSchema<VmConfigState> SCHEMA = SectionSchema
            .builder("vm.config", VmConfigState.getDefaultInstance())
            .version(1).minReadableVersion(1).phase(RestorePhase.VM).build();

    private final Backend backend;
    private final GuestMemory memory;
    private final Supplier<VmShape> shape;

    /** {@code shape} is read at every save: the TSC rate may change after creation (scaling). */
    public VmConfigSection(Backend backend, GuestMemory memory, Supplier<VmShape> shape) {
        this.backend = backend;
        this.memory = memory;
        this.shape = shape;
    }

    @Override
    public SectionSchema<VmConfigState> schema() {
        return SCHEMA;
    }

    @Override
    public String instanceId() {
        return "";
    }

    @Override
    public VmConfigState saveState() {
        VmShape s = shape.get();
        VmConfigState.Builder b = VmConfigState.newBuilder().setVcpuCount(s.vcpus()).setBackend(backend.cliName())
                .setTscKhz(s.tscKhz());
        for (MemoryRegion r : memory.regions()) {
            b.addRegions(MemoryRegionState.newBuilder().setSlot(r.slot()).setGuestPhysAddr(r.guestPhysAddr())
                    .setSize(r.size()));
        }
        for (CpuidLeaf e : s.cpuid()) {
            b.addCpuid(CpuidEntry.newBuilder().setFunction(e.function()).setIndex(e.index()).setFlags(e.flags())
                    .setEax(e.eax()).setEbx(e.ebx()).setEcx(e.ecx()).setEdx(e.edx()));
        }
        WorkloadSpec w = s.config().workload();
        b.setWorkload(WorkloadConfig.newBuilder().setWorkingSetBytes(w.workingSetBytes())
                .setDirtyRateBytesPerSecond(w.dirtyRateBytesPerSecond()).setUnlimited(w.unlimited())
                .setPattern(w.pattern().cliName()).setReportPeriodUs(w.reportPeriod().toNanos() / 1000)
                .setSeed(w.seed())
                .setWordStride(w.wordStride()));
        return b.build();
    }

    @Override
    public void restoreState(VmConfigState s) throws StateException {
        validateState(s);
    }

    @Override
    public void validateState(VmConfigState s) throws StateException {
        VmConfigState mine = saveState();
        if (!backendOf(s).equals(backend)) {
            throw new StateException(SCHEMA.name(), "", "state was saved by the " + backendOf(s).cliName()
                    + " backend; the target VM runs on the " + backend.cliName() + " backend");
        }
        if (s.getVcpuCount() != mine.getVcpuCount() || !s.getRegionsList().equals(mine.getRegionsList())) {
            throw new StateException(SCHEMA.name(), "", "state is for " + s.getVcpuCount() + " vCPUs and "
                    + s.getRegionsCount() + " memory regions; the target VM has " + mine.getVcpuCount()
                    + " vCPUs and " + mine.getRegionsCount() + " regions of another layout");
        }
    }

    private static Backend backendOf(VmConfigState s) throws StateException {
        try {
            return s.getBackend().isEmpty() ? Backend.KVM : Backend.parse(s.getBackend());
        } catch (IllegalArgumentException e) {
            throw new StateException(SCHEMA.name(), "", e.getMessage());
        }
    }

    /** What a saved state says about the VM that saved it. */
    public record Saved(Backend backend, VmShape shape) {}

    /** Reads the VM's backend and shape out of a saved state, so the target VM can be built before restoring. */
    public static Saved read(SectionSet sections) throws StateException {
        var section = sections.get(SCHEMA.name(), "")
                .orElseThrow(() -> new StateException(SCHEMA.name(), "", "required section is missing"));
        VmConfigState s = SCHEMA.decode(section);
        List<GuestMemory.RegionLayout> layout = new ArrayList<>();
        long gpa = 0;
        for (MemoryRegionState r : s.getRegionsList()) {
            if (r.getGuestPhysAddr() != gpa || r.getSize() == 0 || r.getSize() % GuestMemory.SLOT_ALIGN != 0) {
                throw new StateException(SCHEMA.name(), "", "memory regions must be contiguous from 0 in 2 MiB units");
            }
            layout.add(new GuestMemory.RegionLayout(r.getSlot(), r.getGuestPhysAddr(), r.getSize()));
            gpa += r.getSize();
        }
        List<CpuidLeaf> cpuid = new ArrayList<>();
        for (CpuidEntry e : s.getCpuidList()) {
            cpuid.add(new CpuidLeaf(e.getFunction(), e.getIndex(), e.getFlags(), e.getEax(), e.getEbx(), e.getEcx(),
                    e.getEdx()));
        }
        WorkloadConfig w = s.getWorkload();
        try {
            WorkloadSpec spec = WorkloadSpec.of(w.getWorkingSetBytes(), w.getDirtyRateBytesPerSecond(), w.getUnlimited())
                    .withPattern(AccessPattern.parse(w.getPattern()))
                    .withReportPeriod(Duration.ofNanos(w.getReportPeriodUs() * 1000));
            spec = new WorkloadSpec(spec.workingSetBytes(), spec.dirtyRateBytesPerSecond(), spec.unlimited(),
                    spec.pattern(), spec.reportPeriod(), w.getSeed(), spec.hotPermille(), spec.hotWritePermille(),
                    w.getWordStride() == 0 ? 1 : w.getWordStride()); // 0: saved before the stride existed
            VmConfig config = new VmConfig(s.getVcpuCount(), gpa, layout.size(), spec);
            if (!config.memoryLayout().equals(layout)) {
                throw new StateException(SCHEMA.name(), "", "memory regions are not an even split this build can rebuild");
            }
            return new Saved(backendOf(s), new VmShape(config, cpuid, s.getTscKhz()));
        } catch (IllegalArgumentException e) {
            throw new StateException(SCHEMA.name(), "", "invalid VM shape: " + e.getMessage());
        }
    }
}
