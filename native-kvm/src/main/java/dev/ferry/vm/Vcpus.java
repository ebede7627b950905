package dev.ferry.vm;

import dev.ferry.state.SectionSet;
import dev.ferry.state.StateException;
import dev.ferry.state.StateRegistry;
import java.util.ArrayList;
import java.util.List;

/**
 * The vCPU threads of one guest and the life cycle every backend shares: they start once, pause and resume
 * together, the first failure of one stops them all, and state is saved or restored only while none runs.
 * A backend supplies its {@link Vcpu}s (how a thread runs guest code and how it is stopped) and its
 * {@link StateRegistry}; its VM class delegates {@link Pausable} and {@link Snapshottable} here.
 */
public final class Vcpus {
    /** One vCPU thread, as its backend runs it. */
    public interface Vcpu {
        /** Starts the thread running guest code; returns once it runs. */
        void start();

        /** Asks the thread to stop running guest code; returns at once. */
        void requestPause();

        /** Returns once the thread runs no guest code (paused, or ended). */
        void awaitPaused() throws InterruptedException;

        void resume();

        /** Ends the thread for good and joins it. */
        void stop() throws InterruptedException;

        /** Exits to the VMM so far (port I/O and interrupts). */
        long exits();

        /** The Linux thread id (0 before it runs). */
        int tid();
    }

    private final StateRegistry registry;
    private final List<Vcpu> vcpus = new ArrayList<>(); // fixed once started
    private volatile Throwable failure; // set once, under failureLock
    private final Object failureLock = new Object();
    // Guarded by this.
    private boolean started;
    private boolean parked; // the threads run, parked, before the start (see startParked)
    private boolean paused;
    private boolean closed;

    public Vcpus(StateRegistry registry) {
        this.registry = registry;
    }

    public synchronized void add(Vcpu v) {
        if (started || parked) {
            throw new IllegalStateException("vCPUs are added before the VM starts");
        }
        vcpus.add(v);
    }

    /** What each vCPU reports a failure to: the first one stops every vCPU, the VM runs no more guest code. */
    public void fail(Throwable t) {
        // Not this object's lock: pause() holds it while it waits for every vCPU to stop, and a vCPU reports its
        // failure here before it counts as stopped (that wait would never end).
        synchronized (failureLock) {
            if (failure == null) {
                failure = t;
            }
        }
        for (Vcpu v : vcpus) {
            v.requestPause();
        }
    }

    public Throwable failure() {
        return failure;
    }

    public synchronized void start() {
        checkOpen();
        if (started) {
            throw new IllegalStateException("VM already started");
        }
        started = true;
        if (parked) {
            parked = false;
            if (!paused) { // paused before the start: it stays so until resume(), as an unparked VM would
                resume();
            }
            return;
        }
        for (Vcpu v : vcpus) {
            v.start();
        }
    }

    /**
     * Creates the vCPU threads now, parked before any guest code, so that {@link #start()} only wakes them: for a
     * VM whose start is part of a migration's downtime (creating and scheduling a thread took 0.3-4 ms of the
     * destination's resume here). The VM counts as not started until then; state may be restored meanwhile.
     */
    public synchronized void startParked() throws InterruptedException {
        checkOpen();
        if (started || parked) {
            throw new IllegalStateException("vCPU threads already started");
        }
        parked = true;
        for (Vcpu v : vcpus) {
            v.requestPause();
            v.start();
        }
        for (Vcpu v : vcpus) {
            v.awaitPaused();
        }
    }

    /** {@link #startParked()} for a VM being built: on failure {@code close} runs and the failure is thrown. */
    public static void startParked(Vcpus vcpus, Runnable close) {
        try {
            vcpus.startParked();
        } catch (InterruptedException e) {
            close.run();
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while starting the vCPU threads", e);
        } catch (RuntimeException | Error e) {
            close.run();
            throw e;
        }
    }

    /** Stops every vCPU and returns once none runs guest code. Idempotent. */
    public synchronized void pause() throws InterruptedException {
        checkOpen();
        for (Vcpu v : vcpus) {
            v.requestPause();
        }
        for (Vcpu v : vcpus) {
            v.awaitPaused();
        }
        paused = true;
    }

    public synchronized void resume() {
        checkOpen();
        Throwable t = failure;
        if (t != null) {
            throw t instanceof VmFailure f ? f : new VmFailure("VM failed: " + t.getMessage(), t);
        }
        for (Vcpu v : vcpus) {
            v.resume();
        }
        paused = false;
    }

    public synchronized boolean paused() {
        return paused || !started;
    }

    public synchronized SectionSet saveState() {
        requirePaused("save state");
        return registry.save();
    }

    public void validateState(SectionSet sections) throws StateException {
        registry.validate(sections);
    }

    public synchronized void restoreState(SectionSet sections) throws StateException {
        requirePaused("restore state");
        registry.restore(sections);
    }

    private void requirePaused(String what) {
        checkOpen();
        if (started && !paused) {
            throw new IllegalStateException("cannot " + what + " while the VM runs: pause it first");
        }
    }

    /** Linux thread ids in vCPU order; empty before the start. */
    public synchronized List<Integer> threadIds() {
        return started ? vcpus.stream().map(Vcpu::tid).toList() : List.of();
    }

    public long exits() {
        long n = 0;
        for (Vcpu v : vcpus) {
            n += v.exits();
        }
        return n;
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("VM is closed");
        }
    }

    /**
     * Ends every vCPU thread; afterwards the VM may free what they used. Returns false if it was closed already.
     * Keeps the caller's interrupt status.
     */
    public synchronized boolean close() {
        if (closed) {
            return false;
        }
        closed = true;
        boolean interrupted = false;
        for (Vcpu v : vcpus) {
            try {
                v.stop();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        return true;
    }
}
