package dev.ferry.kvm.vm;

import dev.ferry.devices.PortIoBus;
import dev.ferry.kvm.sys.KvmIoctls;
import dev.ferry.kvm.sys.KvmRun;
import dev.ferry.kvm.sys.KvmVcpu;
import dev.ferry.linux.Errno;
import dev.ferry.linux.KickTarget;
import dev.ferry.linux.Signals;
import dev.ferry.vm.Vcpus;
import dev.ferry.vm.VmFailure;
import java.util.concurrent.CountDownLatch;
import java.util.function.Consumer;

/**
 * Runs one vCPU on its own thread: KVM_RUN, dispatch the exit, repeat. Pausing is cooperative but
 * immediate: {@link #requestPause()} sets immediate_exit and kicks the thread with a signal that is
 * blocked everywhere except inside KVM_RUN (see {@link Signals}), so KVM_RUN returns EINTR even when
 * the guest spins in ring 3 without ever exiting.
 */
final class VcpuRunner implements Runnable, Vcpus.Vcpu {
    enum State { NEW, RUNNING, PAUSED, STOPPED }

    private final KvmVcpu vcpu;
    private final PortIoBus bus;
    private final Consumer<Throwable> onFailure;
    private final CountDownLatch started = new CountDownLatch(1);

    // Guarded by this.
    private boolean pauseRequested;
    private boolean stopRequested;
    private State state = State.NEW;
    private KickTarget kickTarget; // null until the thread runs; retired before it exits

    private volatile long exits;
    private volatile Thread thread;
    private boolean entered; // this vCPU thread only: KVM_RUN has run guest code at least once

    VcpuRunner(KvmVcpu vcpu, PortIoBus bus, Consumer<Throwable> onFailure) {
        this.vcpu = vcpu;
        this.bus = bus;
        this.onFailure = onFailure;
    }

    @Override
    public void start() {
        Thread t = new Thread(this, "vcpu-" + vcpu.id());
        t.setDaemon(true);
        thread = t;
        t.start();
        try {
            started.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while starting vCPU " + vcpu.id(), e);
        }
    }

    @Override
    public long exits() {
        return exits;
    }

    /** Linux thread id of the vCPU thread (0 until it runs). */
    @Override
    public synchronized int tid() {
        return kickTarget == null ? 0 : kickTarget.tid();
    }

    @Override
    public void run() {
        try {
            KickTarget me = KickTarget.forCurrentThread(Signals.KICK_SIGNAL);
            try {
                vcpu.setSignalMask(Signals.KICK_SIGNAL); // unblocked only inside KVM_RUN
                synchronized (this) {
                    kickTarget = me;
                }
                started.countDown();
                loop();
            } finally {
                me.retire(); // no kick may reach this tid once the thread is gone (tids are recycled)
            }
        } catch (Throwable t) {
            started.countDown();
            synchronized (this) {
                state = State.STOPPED;
                notifyAll();
            }
            onFailure.accept(t);
            return;
        }
        synchronized (this) {
            state = State.STOPPED;
            notifyAll();
        }
    }

    private void loop() throws InterruptedException {
        KvmRun run = vcpu.run();
        while (true) {
            if (parkIfRequested(run)) {
                return;
            }
            entered = true;
            int rc = vcpu.runOnce();
            if (rc == -Errno.EINTR || rc == -Errno.EAGAIN) {
                Signals.drainPending(Signals.KICK_SIGNAL);
                continue;
            }
            if (rc < 0) {
                throw new VmFailure("vCPU " + vcpu.id() + ": KVM_RUN failed: " + Errno.name(-rc));
            }
            exits++;
            int reason = run.exitReason();
            switch (reason) {
                case KvmIoctls.KVM_EXIT_IO:
                    handleIo(run);
                    break;
                case KvmIoctls.KVM_EXIT_INTR:
                    break;
                case KvmIoctls.KVM_EXIT_SHUTDOWN: {
                    var regs = vcpu.getRegs();
                    throw new VmFailure(String.format(
                            "vCPU %d: guest triple-faulted (KVM_EXIT_SHUTDOWN) at rip=0x%x rsp=0x%x", vcpu.id(),
                            regs.rip, regs.rsp));
                }
                default:
                    throw new VmFailure("vCPU " + vcpu.id() + ": unexpected exit " + KvmIoctls.exitReasonName(reason)
                            + describeExit(run, reason));
            }
        }
    }

    private static String describeExit(KvmRun run, int reason) {
        if (reason == KvmIoctls.KVM_EXIT_INTERNAL_ERROR) {
            return " (suberror " + run.internalSuberror() + ")";
        }
        if (reason == KvmIoctls.KVM_EXIT_FAIL_ENTRY) {
            return String.format(" (hardware reason 0x%x)", run.failEntryHardwareReason());
        }
        return "";
    }

    private void handleIo(KvmRun run) {
        int size = run.ioSize();
        int port = run.ioPort();
        int count = run.ioCount();
        var data = run.ioData();
        boolean in = run.ioDirection() == KvmIoctls.KVM_EXIT_IO_IN;
        for (int i = 0; i < count; i++) {
            long off = (long) i * size;
            if (in) {
                int v = bus.read(vcpu.id(), port, size);
                switch (size) {
                    case 1 -> data.setByte(off, (byte) v);
                    case 2 -> data.setShort(off, (short) v);
                    default -> data.setInt(off, v);
                }
            } else {
                int v = switch (size) {
                    case 1 -> data.getByte(off) & 0xFF;
                    case 2 -> data.getShort(off) & 0xFFFF;
                    default -> data.getInt(off);
                };
                bus.write(vcpu.id(), port, size, v);
            }
        }
    }

    /**
     * Parks while a pause is requested. Before parking, completes any half-done I/O instruction with
     * one KVM_RUN under immediate_exit (the KVM API requires this before reading vCPU state); a vCPU that
     * never ran has none, and its state may not be set yet (an incoming VM's threads park before the
     * restore). Returns true when the runner should stop.
     */
    private boolean parkIfRequested(KvmRun run) throws InterruptedException {
        synchronized (this) {
            if (!pauseRequested && !stopRequested) {
                return false;
            }
        }
        if (entered) {
            run.setImmediateExit(true);
            int rc = vcpu.runOnce();
            if (rc != -Errno.EINTR && rc < 0 && rc != -Errno.EAGAIN) {
                throw new VmFailure("vCPU " + vcpu.id() + ": completing pending I/O failed: " + Errno.name(-rc));
            }
        }
        Signals.drainPending(Signals.KICK_SIGNAL);
        synchronized (this) {
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
        }
        run.setImmediateExit(false);
        Signals.drainPending(Signals.KICK_SIGNAL);
        return false;
    }

    /** Asks the vCPU to stop running guest code; returns at once (see {@link #awaitPaused()}). */
    @Override
    public void requestPause() {
        synchronized (this) {
            pauseRequested = true;
        }
        kick();
    }

    /** Makes KVM_RUN return now, or right at its next entry. */
    private void kick() {
        KickTarget t;
        synchronized (this) {
            if (state == State.PAUSED || state == State.STOPPED) {
                return;
            }
            t = kickTarget;
        }
        vcpu.run().setImmediateExit(true);
        if (t != null) {
            t.kick(); // a no-op once the thread retired
        }
    }

    @Override
    public synchronized void awaitPaused() throws InterruptedException {
        while (state != State.PAUSED && state != State.STOPPED) {
            wait();
        }
    }

    @Override
    public synchronized void resume() {
        pauseRequested = false;
        notifyAll();
    }

    @Override
    public void stop() throws InterruptedException {
        synchronized (this) {
            stopRequested = true;
            notifyAll();
        }
        kick();
        Thread t = thread;
        if (t != null) {
            t.join();
        }
    }

    synchronized State state() {
        return state;
    }
}
