package dev.ferry.devices;

/**
 * A device on the x86 I/O-port bus. Calls come from vCPU threads (one per vCPU, concurrently), so
 * implementations synchronise their own state.
 */
public interface PortIoDevice {
    /** First port and number of ports this device decodes. */
    int basePort();

    int portCount();

    /** Guest {@code in} of {@code size} bytes (1, 2 or 4) at {@code port}. */
    int read(int vcpu, int port, int size);

    /** Guest {@code out} of {@code size} bytes (1, 2 or 4) at {@code port}. */
    void write(int vcpu, int port, int size, int value);
}
