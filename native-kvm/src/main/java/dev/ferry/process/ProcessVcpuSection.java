package dev.ferry.process;

import dev.ferry.process.state.v1.ProcessVcpuState;
import dev.ferry.state.RestorePhase;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.StateException;
import dev.ferry.state.Stateful;

/** Section "process.vcpu": a process vCPU's clock; the rest of its state is in guest memory. */
final class ProcessVcpuSection implements Stateful<ProcessVcpuState> {
    static final SectionSchema<ProcessVcpuState> SCHEMA = SectionSchema
            .builder("process.vcpu", ProcessVcpuState.getDefaultInstance())
            .version(1).minReadableVersion(1).phase(RestorePhase.VCPU).build();

    private final ProcessVcpu vcpu;

    ProcessVcpuSection(ProcessVcpu vcpu) {
        this.vcpu = vcpu;
    }

    @Override
    public SectionSchema<ProcessVcpuState> schema() {
        return SCHEMA;
    }

    @Override
    public String instanceId() {
        return Integer.toString(vcpu.index());
    }

    @Override
    public ProcessVcpuState saveState() {
        return ProcessVcpuState.newBuilder().setGuestTsc(vcpu.guestTsc()).build();
    }

    @Override
    public void validateState(ProcessVcpuState s) throws StateException {
        // Any TSC value is a valid clock.
    }

    @Override
    public void restoreState(ProcessVcpuState s) throws StateException {
        vcpu.setGuestTsc(s.getGuestTsc());
    }
}
