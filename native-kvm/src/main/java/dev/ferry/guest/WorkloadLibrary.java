package dev.ferry.guest;

import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;
import dev.ferry.memory.GuestMemory;
import java.time.Duration;

/**
 * The guest workload as host code: {@code libferryworkload.so}, built by the Maven build from the
 * same {@code workload_core.c} as the KVM guest image, so both backends run identical page-writing
 * code. Direct-mapped (no allocation, no lock per call).
 *
 * <p>A process-backend vCPU thread runs the workload like this ({@code base} is the host address of
 * guest-physical 0, the memory one contiguous mapping; {@code stop} the address of a native int):
 * <pre>{@code
 * for (;;) {
 *     // pause point: between steps, guest memory holds all of the workload's state
 *     int rc = WorkloadLibrary.step(base, memBytes, cpu, tscOffset, stop);
 *     if (rc == STEP_IO) {
 *         WorkloadLibrary.completeIo(memory, cpu, bus);   // the exit KVM would have made
 *     } else if (rc == STEP_STOPPED) {
 *         // *stop was set: park until resumed, clear *stop, loop
 *     } else {
 *         // STEP_BAD: report GuestAbi.EVENT_BAD_PARAMS on the event port and stop this vCPU
 *     }
 * }
 * }</pre>
 * Complete an I/O request before parking: then the state block never holds an owed request at a
 * pause. (If one is left owed, it is still captured: the next step returns {@link #STEP_IO} for it.)
 */
public final class WorkloadLibrary {
    /** Name JNA resolves: {@code linux-x86-64/libferryworkload.so} on the classpath. */
    public static final String LIBRARY_NAME = "ferryworkload";

    // Return values of ferry_workload_step (workload_core.h; checked by GuestAbiTest).
    /** A port I/O request is pending in the vCPU's state block: do it, then call again. */
    public static final int STEP_IO = 1;
    /** The stop flag was set: the step returned between two loop iterations. */
    public static final int STEP_STOPPED = 2;
    /** The parameter block or the state block is out of range: the guest cannot run. */
    public static final int STEP_BAD = 3;

    private static final Throwable LOAD_FAILURE;

    static {
        Throwable failure = null;
        try {
            Native.register(WorkloadLibrary.class,
                    NativeLibrary.getInstance(LIBRARY_NAME, WorkloadLibrary.class.getClassLoader()));
        } catch (UnsatisfiedLinkError | RuntimeException e) {
            failure = e;
        }
        LOAD_FAILURE = failure;
    }

    private WorkloadLibrary() {}

    private static native long ferry_workload_step(long base, long memBytes, long cpu, long tscOffset, long stop);

    private static native long ferry_rdtsc();

    /** Whether the library loaded; {@link #requireLoaded()} says why not. */
    public static boolean isLoaded() {
        return LOAD_FAILURE == null;
    }

    /** @throws IllegalStateException naming the missing library and how it is built */
    public static void requireLoaded() {
        if (LOAD_FAILURE != null) {
            throw new IllegalStateException("the workload library lib" + LIBRARY_NAME + ".so could not be loaded"
                    + " (it belongs on the classpath under linux-x86-64/; build native-kvm with Maven, which runs"
                    + " make in src/main/guest): " + LOAD_FAILURE.getMessage(), LOAD_FAILURE);
        }
    }

    /**
     * Runs vCPU {@code cpu}'s workload from where its state block says, until it needs port I/O or
     * the int at {@code stopFlagAddress} (0: none) becomes non-zero.
     *
     * @param base host address of guest-physical address 0 (guest memory must be one contiguous mapping)
     * @param memBytes size of that mapping: the workload touches nothing outside [base, base + memBytes)
     * @param tscOffset added to this host's TSC to make the guest's clock
     * @return {@link #STEP_IO}, {@link #STEP_STOPPED} or {@link #STEP_BAD}
     */
    public static int step(long base, long memBytes, int cpu, long tscOffset, long stopFlagAddress) {
        requireLoaded();
        return (int) ferry_workload_step(base, memBytes, cpu, tscOffset, stopFlagAddress);
    }

    /** This CPU's TSC, as the workload reads it. */
    public static long rdtsc() {
        requireLoaded();
        return ferry_rdtsc();
    }

    /**
     * Performs the port I/O request pending in vCPU {@code vcpu}'s state block on {@code bus}, as
     * a KVM exit would (see VcpuRunner.handleIo): an {@code in}'s value goes back into the block.
     * Then marks the request done. Does nothing if none is pending.
     *
     * @throws IllegalStateException if the request is malformed (the step never returns one)
     */
    public static void completeIo(GuestMemory memory, int vcpu, PortIo bus) {
        long s = GuestAbi.vcpuStateGpa(vcpu);
        if (memory.getLong(s + GuestAbi.V_IO_PENDING) == 0) {
            return;
        }
        long port = memory.getLong(s + GuestAbi.V_IO_PORT);
        long size = memory.getLong(s + GuestAbi.V_IO_SIZE);
        long dir = memory.getLong(s + GuestAbi.V_IO_DIR);
        if (port < 0 || port > 0xffff || (size != 1 && size != 2 && size != 4)
                || (dir != GuestAbi.IO_IN && dir != GuestAbi.IO_OUT)) {
            throw new IllegalStateException(String.format(
                    "vCPU %d: malformed port I/O request port=0x%x size=%d dir=%d", vcpu, port, size, dir));
        }
        if (dir == GuestAbi.IO_IN) {
            int v = bus.read(vcpu, (int) port, (int) size);
            long mask = size == 4 ? 0xffffffffL : (1L << (size * 8)) - 1;
            memory.putLong(s + GuestAbi.V_IO_VALUE, v & mask);
        } else {
            bus.write(vcpu, (int) port, (int) size, (int) memory.getLong(s + GuestAbi.V_IO_VALUE));
        }
        memory.putLong(s + GuestAbi.V_IO_PENDING, 0);
    }

    /**
     * This host's TSC rate in kHz, measured against System.nanoTime over {@code window}. The
     * process backend has no KVM to ask, and its guest's clock is this TSC.
     */
    public static long measureTscKhz(Duration window) throws InterruptedException {
        long n0 = System.nanoTime();
        long t0 = rdtsc();
        Thread.sleep(window.toMillis(), window.toNanosPart() % 1_000_000);
        long n1 = System.nanoTime();
        long t1 = rdtsc();
        return Math.max(1, (long) ((double) (t1 - t0) * 1_000_000 / (n1 - n0)));
    }
}
