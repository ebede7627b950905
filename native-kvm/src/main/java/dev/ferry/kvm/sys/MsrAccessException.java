package dev.ferry.kvm.sys;

import dev.ferry.linux.NativeException;

/**
 * KVM_GET_MSRS / KVM_SET_MSRS succeeded but processed fewer entries than asked: KVM stops at the
 * first MSR it refuses (unknown to KVM, or a value it rejects). Not an errno ({@link #errno()} is 0).
 */
public final class MsrAccessException extends NativeException {
    private final int processed;
    private final int requested;
    private final int failedIndex;

    MsrAccessException(String operation, int processed, int[] indices) {
        super(operation, 0, String.format("%s: processed %d of %d MSRs; MSR 0x%x was refused",
                operation, processed, indices.length, indices[Math.min(processed, indices.length - 1)]));
        this.processed = processed;
        this.requested = indices.length;
        this.failedIndex = indices[Math.min(processed, indices.length - 1)];
    }

    public int processed() {
        return processed;
    }

    public int requested() {
        return requested;
    }

    /** The MSR index at which KVM stopped. */
    public int failedIndex() {
        return failedIndex;
    }
}
