package dev.ferry.linux;

/**
 * A thread that may be kicked with a signal it blocks (see {@link Signals}), guarding against the
 * one fatal mistake of the scheme: signalling a tid after its thread exited. Linux recycles tids,
 * and a recycled tid may belong to a thread that does not block the signal, whose default action
 * would then terminate the JVM. {@link #kick()} and {@link #retire()} are mutually exclusive, so
 * once the target thread has retired (it must, before it exits) no signal can reach the tid.
 *
 * <pre>{@code
 * // on the vCPU thread
 * KickTarget me = KickTarget.forCurrentThread(Signals.KICK_SIGNAL); // blocks the signal
 * vcpu.setSignalMask(Signals.KICK_SIGNAL);
 * try { ... runOnce() / Signals.consumePending(...) loop ... } finally { me.retire(); }
 * // elsewhere
 * me.kick();
 * }</pre>
 */
public final class KickTarget {
    private final int tid;
    private final int signal;
    private boolean retired; // guarded by this

    private KickTarget(int tid, int signal) {
        this.tid = tid;
        this.signal = signal;
    }

    /** Blocks {@code signal} on the calling thread and returns a handle to kick it. */
    public static KickTarget forCurrentThread(int signal) {
        Signals.blockOnCurrentThread(signal);
        return new KickTarget(Signals.currentThreadId(), signal);
    }

    public int tid() {
        return tid;
    }

    public int signal() {
        return signal;
    }

    /** Sends the signal to the thread unless it has retired; returns whether it was sent. */
    public synchronized boolean kick() {
        if (retired) {
            return false;
        }
        Signals.kick(tid, signal);
        return true;
    }

    /**
     * Called by the target thread before it exits (or stops blocking the signal): later kicks are
     * no-ops. Also drains any kick still pending. Must run on the target thread.
     */
    public void retire() {
        synchronized (this) {
            retired = true;
        }
        if (Signals.currentThreadId() == tid) {
            Signals.drainPending(signal);
        }
    }

    public synchronized boolean isRetired() {
        return retired;
    }
}
