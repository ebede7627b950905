package dev.ferry.vm;

import dev.ferry.guest.GuestLayout;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.memory.GuestMemory;
import java.util.List;
import java.util.Objects;

/**
 * What a micro-VM is made of.
 *
 * @param vcpus number of vCPUs; each runs the workload on its own slice of the working set
 * @param memoryBytes guest RAM, a multiple of 2 MiB
 * @param slots number of KVM memory slots the RAM is split into
 * @param workload what the guest does
 */
public record VmConfig(int vcpus, long memoryBytes, int slots, WorkloadSpec workload) {
    public VmConfig {
        Objects.requireNonNull(workload, "workload");
        GuestMemory.layout(memoryBytes, slots); // validates sizes
        new GuestLayout(memoryBytes, vcpus, workload); // validates that the workload fits
    }

    /** One slot per started GiB of RAM. */
    public static VmConfig of(int vcpus, long memoryBytes, WorkloadSpec workload) {
        int slots = (int) Math.max(1, (memoryBytes + (1L << 30) - 1) >> 30);
        return new VmConfig(vcpus, memoryBytes, slots, workload);
    }

    public List<GuestMemory.RegionLayout> memoryLayout() {
        return GuestMemory.layout(memoryBytes, slots);
    }
}
