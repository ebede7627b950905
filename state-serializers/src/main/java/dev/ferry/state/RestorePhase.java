package dev.ferry.state;

/**
 * When a section is restored relative to the others. Sections are applied phase by phase in declaration order
 * ({@link #VM}, then {@link #VCPU}, then {@link #DEVICE}), and in registration order within a phase.
 */
public enum RestorePhase {
    /** VM-wide state the rest depends on: memory layout, in-kernel irqchip, PIT, KVM clock. */
    VM,
    /** Per-vCPU state: registers, LAPIC, MSRs, pending events. Needs the VM-level irqchip in place. */
    VCPU,
    /** Emulated devices (serial, virtio, ...). May raise interrupts or reference vCPUs, so comes last. */
    DEVICE
}
