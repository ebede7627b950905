package dev.ferry.control.migration;

import dev.ferry.vm.Pausable;
import java.util.concurrent.TimeUnit;

/**
 * Auto-converge's CPU throttle on the source: at P %, the guest's vCPUs are held paused for P ms out of every
 * {@value #PERIOD_MILLIS} ms, on a thread of its own. A guest that computes gets P % less done, and dirties
 * correspondingly less; a guest with time to spare catches up (as on any host under CPU pressure).
 *
 * <p>{@link #close()} ends the throttle and returns once the vCPUs run again; the driver closes it before it pauses
 * the guest for the switchover, and on every way out of precopy, so the throttle never resumes a guest the
 * migration paused and never leaves one paused.
 */
final class GuestThrottle implements AutoCloseable {
    static final long PERIOD_MILLIS = 100;
    private static final System.Logger LOG = System.getLogger(GuestThrottle.class.getName());

    private final Pausable vcpus;
    private final String name;
    // Guarded by this.
    private int percent;
    private boolean closed;
    private Thread thread;

    GuestThrottle(Pausable vcpus, String name) {
        this.vcpus = vcpus;
        this.name = name;
    }

    /** Holds the vCPUs paused {@code percent} % of the time from the next period on; 0 lets them run freely. */
    synchronized void set(int percent) {
        if (percent < 0 || percent > 99) {
            throw new IllegalArgumentException("throttle must be 0 to 99 percent, not " + percent);
        }
        if (closed) {
            return;
        }
        this.percent = percent;
        if (percent > 0 && thread == null) {
            thread = new Thread(this::run, "ferry-throttle-" + name);
            thread.setDaemon(true);
            thread.start();
        }
        notifyAll();
    }

    synchronized int percent() {
        return percent;
    }

    private void run() {
        try {
            while (true) {
                int p;
                synchronized (this) {
                    while (!closed && percent == 0) {
                        wait();
                    }
                    if (closed) {
                        return;
                    }
                    p = percent;
                }
                vcpus.pause();
                try {
                    hold(p);
                } finally {
                    vcpus.resume();
                }
                hold(100 - p);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (RuntimeException e) {
            // The VM failed or closed under the throttle: nothing left to slow down; the migration sees the failure.
            LOG.log(System.Logger.Level.WARNING, "{0}: throttle stopped: {1}", name, e.getMessage());
        }
    }

    /** Waits {@code percent} % of a period, or less if closed meanwhile (the period's length is the mechanism). */
    private synchronized void hold(int percent) throws InterruptedException {
        long until = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(PERIOD_MILLIS * percent / 100);
        long left;
        while (!closed && (left = until - System.nanoTime()) > 0) {
            TimeUnit.NANOSECONDS.timedWait(this, left);
        }
    }

    /** Ends the throttle; returns once its thread is gone and the vCPUs run as before. Idempotent. */
    @Override
    public void close() {
        Thread t;
        synchronized (this) {
            closed = true;
            percent = 0;
            notifyAll();
            t = thread;
        }
        if (t == null) {
            return;
        }
        boolean interrupted = false;
        while (true) {
            try {
                t.join();
                break;
            } catch (InterruptedException e) {
                interrupted = true; // the guest must not stay paused: finish the join first
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }
}
