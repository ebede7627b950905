package dev.ferry.vm;

import java.util.List;
import java.util.Objects;

/**
 * What a guest is, as a peer must match it: its configuration (vCPUs, memory layout, workload), the
 * CPU model it saw and the rate its TSC ticks at.
 *
 * @param config what the VM was created with
 * @param cpuid  the CPUID leaves the guest saw; empty for a process guest (plain x86-64 code, no CPUID)
 * @param tscKhz the guest's TSC rate in kHz (0: unknown)
 */
public record VmShape(VmConfig config, List<CpuidLeaf> cpuid, int tscKhz) {
    public VmShape {
        Objects.requireNonNull(config, "config");
        cpuid = List.copyOf(cpuid);
    }

    public int vcpus() {
        return config.vcpus();
    }
}
