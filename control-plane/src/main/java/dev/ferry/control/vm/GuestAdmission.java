package dev.ferry.control.vm;

import dev.ferry.control.edge.Fields;
import io.grpc.Status;
import java.util.function.LongSupplier;

/**
 * Decides, before anything is allocated, whether one more VM (created, or arriving by migration) fits this agent:
 * at most {@code maxVms} VMs, at most {@code maxGuestMemory} bytes of guest memory across them, and no more than
 * the host has available now less a headroom for the agent itself. A refusal is RESOURCE_EXHAUSTED saying what
 * was asked and what is left. Admitted memory is held by a {@link Reservation} until the VM is registered (its
 * memory then counts through the registry) or the attempt fails.
 */
public final class GuestAdmission {
    /** Default --max-vms: far above what this host's cores can run usefully, low enough to bound bookkeeping. */
    public static final int DEFAULT_MAX_VMS = 64;
    /** Kept free for the agent's own JVM, page buffers and the kernel, whatever the guests take. */
    public static final long MIN_HEADROOM = 512L << 20;

    /**
     * @param maxVms          most VMs at once, incoming ones included
     * @param maxGuestMemory  most guest memory across VMs, in bytes; 0: the host's total memory less the headroom
     */
    public record Limits(int maxVms, long maxGuestMemory) {
        public static final Limits DEFAULT = new Limits(DEFAULT_MAX_VMS, 0);

        public Limits {
            if (maxVms < 1) {
                throw new IllegalArgumentException("--max-vms must be at least 1, got " + maxVms);
            }
            if (maxGuestMemory < 0) {
                throw new IllegalArgumentException("--max-guest-memory must not be negative");
            }
        }
    }

    /** Memory admitted but not yet registered; close it once the VM is registered or has failed to start. */
    public interface Reservation extends AutoCloseable {
        @Override
        void close();
    }

    private final Limits limits;
    private final HostMemory host;
    private final long headroom;
    private final LongSupplier registeredMemory;
    private final LongSupplier registeredCount;
    // Guarded by this: reservations in flight, so two concurrent creates cannot both take the last GiB.
    private long pendingMemory;
    private int pendingCount;

    GuestAdmission(Limits limits, HostMemory host, LongSupplier registeredMemory, LongSupplier registeredCount) {
        this.limits = limits;
        this.host = host;
        this.headroom = Math.max(MIN_HEADROOM, host.totalBytes() / 20);
        this.registeredMemory = registeredMemory;
        this.registeredCount = registeredCount;
    }

    /** The configured or default total guest memory. */
    public long maxGuestMemory() {
        return limits.maxGuestMemory() > 0 ? limits.maxGuestMemory() : Math.max(0, host.totalBytes() - headroom);
    }

    public Limits limits() {
        return limits;
    }

    /** Admits {@code what} (e.g. "vms/web") with {@code memory} bytes of guest memory, or RESOURCE_EXHAUSTED. */
    public synchronized Reservation admit(String what, long memory) {
        long count = registeredCount.getAsLong() + pendingCount;
        if (count + 1 > limits.maxVms()) {
            throw exhausted(what + " would be VM number " + (count + 1) + " on this agent; --max-vms is "
                    + limits.maxVms());
        }
        long held = registeredMemory.getAsLong() + pendingMemory;
        long max = maxGuestMemory();
        if (memory > max - held) {
            throw exhausted(what + " asks " + Fields.human(memory) + " of guest memory; " + Fields.human(Math.max(0,
                    max - held)) + " is left of this agent's " + Fields.human(max) + " (--max-guest-memory; "
                    + Fields.human(held) + " held by " + count + " VMs)");
        }
        long available = host.availableBytes() - headroom;
        if (memory > available) {
            throw exhausted(what + " asks " + Fields.human(memory) + " of guest memory; the host has "
                    + Fields.human(Math.max(0, available)) + " available (MemAvailable less " + Fields.human(headroom)
                    + " headroom)");
        }
        pendingMemory += memory;
        pendingCount++;
        return new Reservation() {
            private boolean closed;

            @Override
            public void close() {
                synchronized (GuestAdmission.this) {
                    if (!closed) {
                        closed = true;
                        pendingMemory -= memory;
                        pendingCount--;
                    }
                }
            }
        };
    }

    private static RuntimeException exhausted(String message) {
        return Status.RESOURCE_EXHAUSTED.withDescription(message).asRuntimeException();
    }
}
