package dev.ferry.process;

import dev.ferry.guest.WorkloadLibrary;

/**
 * This host's TSC rate, measured against CLOCK_MONOTONIC: a process guest paces itself by the TSC, and
 * there is no KVM to ask. Two agents on one host must agree within KVM's 250 ppm to migrate between them,
 * so each end of the window is the tightest of several (monotonic, TSC, monotonic) brackets.
 */
final class TscRate {
    private static final long WINDOW_NANOS = 50_000_000L;
    private static volatile int cached;

    private TscRate() {}

    static int measureKhz() {
        int c = cached;
        if (c == 0) {
            Sample a = sample();
            java.util.concurrent.locks.LockSupport.parkNanos(WINDOW_NANOS);
            Sample b = sample();
            c = (int) Math.round((double) (b.tsc - a.tsc) * 1_000_000 / (b.nanos - a.nanos));
            cached = c;
        }
        return c;
    }

    private record Sample(long nanos, long tsc) {}

    /** The TSC read between two clock reads that are closest together: its time is their midpoint. */
    private static Sample sample() {
        Sample best = null;
        long bestWidth = Long.MAX_VALUE;
        for (int i = 0; i < 50; i++) {
            long n0 = System.nanoTime();
            long t = WorkloadLibrary.rdtsc();
            long n1 = System.nanoTime();
            if (n1 - n0 < bestWidth) {
                bestWidth = n1 - n0;
                best = new Sample(n0 + (n1 - n0) / 2, t);
            }
        }
        return best;
    }
}
