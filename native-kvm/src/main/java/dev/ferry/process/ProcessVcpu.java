package dev.ferry.process;

import com.sun.jna.Memory;
import com.sun.jna.Pointer;
import dev.ferry.devices.PortIoBus;
import dev.ferry.guest.GuestAbi;
import dev.ferry.guest.WorkloadLibrary;
import dev.ferry.linux.LibC;
import dev.ferry.memory.GuestMemory;
import dev.ferry.vm.Vcpus;
import dev.ferry.vm.VmFailure;
import java.util.concurrent.CountDownLatch;
import java.util.function.Consumer;

/**
 * One process-guest vCPU: a host thread that runs the workload core step by step. A step returns when
 * the guest needs port I/O (served here on the same device bus a KVM exit reaches) or when the stop
 * flag is raised; between two steps everything the guest has is in guest memory, so a pause there is
 * a clean cut. The clock the guest reads is this host's TSC plus {@link #tscOffset}.
 */
final class ProcessVcpu implements Runnable, Vcpus.Vcpu {
    enum State { NEW, RUNNING, PAUSED, STOPPED }

    private final int index;
    private final GuestMemory memory;
    private final PortIoBus bus;
    private final Consumer<Throwable> onFailure;
    /** The native int the step polls between loop iterations: non-zero makes it return. */
    private final Memory stopFlag = new Memory(4);
    private final long stopAddress = Pointer.nativeValue(stopFlag);
    private final CountDownLatch started = new CountDownLatch(1);
    private volatile long tscOffset;
    private volatile long exits;

    // Guarded by this.
    private boolean pauseRequested;
    private boolean stopRequested;
    private State state = State.NEW;
    private int tid;
    private Thread thread;

    ProcessVcpu(int index, GuestMemory memory, PortIoBus bus, Consumer<Throwable> onFailure) {
        this.index = index;
        this.memory = memory;
        this.bus = bus;
        this.onFailure = onFailure;
        stopFlag.setInt(0, 0);
    }

    int index() {
        return index;
    }

    @Override
    public void start() {
        Thread t = new Thread(this, "vcpu-" + index);
        t.setDaemon(true);
        synchronized (this) {
            thread = t;
        }
        t.start();
        try {
            started.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while starting vCPU " + index, e);
        }
    }

    @Override
    public void run() {
        synchronized (this) {
            tid = LibC.gettid();
            state = State.RUNNING;
        }
        started.countDown();
        try {
            loop();
        } catch (Throwable t) {
            onFailure.accept(t);
        } finally {
            synchronized (this) {
                state = State.STOPPED;
                notifyAll();
            }
        }
    }

    private void loop() throws InterruptedException {
        long base = memory.base();
        long size = memory.totalBytes();
        while (!parkIfRequested()) {
            int rc = WorkloadLibrary.step(base, size, index, tscOffset, stopAddress);
            if (rc == WorkloadLibrary.STEP_IO) {
                exits++;
                WorkloadLibrary.completeIo(memory, index, bus); // before any pause: no request is left owed
            } else if (rc == WorkloadLibrary.STEP_BAD) {
                bus.write(index, GuestAbi.PORT_EVENT, 4, GuestAbi.EVENT_BAD_PARAMS);
                throw new VmFailure("vCPU " + index + ": the guest's parameter or state block is out of range "
                        + "(corrupted guest memory, or a workload of another ABI version)");
            } else if (rc != WorkloadLibrary.STEP_STOPPED) {
                throw new VmFailure("vCPU " + index + ": the workload step returned " + rc);
            }
        }
    }

    /** Parks while a pause is requested; true when the vCPU should stop for good. */
    private synchronized boolean parkIfRequested() throws InterruptedException {
        if (!pauseRequested && !stopRequested) {
            return false;
        }
        state = State.PAUSED;
        notifyAll();
        while (pauseRequested && !stopRequested) {
            wait();
        }
        if (stopRequested) {
            return true;
        }
        state = State.RUNNING;
        notifyAll();
        return false;
    }

    /** Asks the vCPU to stop between two steps; returns at once (see {@link #awaitPaused()}). */
    @Override
    public synchronized void requestPause() {
        pauseRequested = true;
        stopFlag.setInt(0, 1);
    }

    @Override
    public synchronized void awaitPaused() throws InterruptedException {
        while (state != State.PAUSED && state != State.STOPPED && thread != null) {
            wait();
        }
    }

    @Override
    public synchronized void resume() {
        pauseRequested = false;
        if (!stopRequested) {
            stopFlag.setInt(0, 0);
        }
        notifyAll();
    }

    @Override
    public void stop() throws InterruptedException {
        Thread t;
        synchronized (this) {
            stopRequested = true;
            stopFlag.setInt(0, 1);
            notifyAll();
            t = thread;
        }
        if (t != null) {
            t.join();
        }
    }

    /** The TSC the guest reads now (call while paused for a value that holds). */
    long guestTsc() {
        return WorkloadLibrary.rdtsc() + tscOffset;
    }

    /** Makes the guest's clock read {@code tsc} now and tick on from there. */
    void setGuestTsc(long tsc) {
        tscOffset = tsc - WorkloadLibrary.rdtsc();
    }

    @Override
    public long exits() {
        return exits;
    }

    @Override
    public synchronized int tid() {
        return tid;
    }
}
