package dev.ferry.guest;

/** Where the workload's port I/O goes: the VMM's device bus. */
public interface PortIo {
    /** An {@code in} of {@code size} bytes (1, 2 or 4) from {@code port} by vCPU {@code vcpu}. */
    int read(int vcpu, int port, int size);

    /** An {@code out} of {@code size} bytes of {@code value} to {@code port} by vCPU {@code vcpu}. */
    void write(int vcpu, int port, int size, int value);
}
