package dev.ferry.vm;

import java.util.List;
import java.util.Optional;

/**
 * One guest an agent hosts, whatever runs it: what the migration engine, the VM service and the CLI
 * depend on. {@link Backend#KVM} runs it in a KVM micro-VM, {@link Backend#PROCESS} as native code in
 * host threads over the same kind of memory.
 */
public interface GuestVm extends Migratable, AutoCloseable {
    Backend backend();

    /** vCPUs, memory layout, workload, CPU model and TSC rate: what a peer must match. */
    VmShape shape();

    /** The guest's own view (progress reports, pauses it felt, self-check), if its workload offers one. */
    Optional<GuestProbe> probe();

    /** The first vCPU failure, or null. A failed VM runs no more guest code. */
    Throwable failure();

    /** Throws the first vCPU failure as a {@link VmFailure}, if any. */
    default void throwIfFailed() {
        Throwable t = failure();
        if (t != null) {
            throw t instanceof VmFailure f ? f : new VmFailure("VM failed: " + t.getMessage(), t);
        }
    }

    /** Linux thread ids of the vCPU threads, in vCPU order (empty before {@link #start()}). */
    List<Integer> vcpuThreadIds();

    /** Exits to the VMM so far, all vCPUs (port I/O, interrupts). */
    long vcpuExits();

    /** Stops the vCPUs and releases every fd, thread and mapping. Idempotent. */
    @Override
    void close();
}
