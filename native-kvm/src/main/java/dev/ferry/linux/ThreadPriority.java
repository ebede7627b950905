package dev.ferry.linux;

import java.io.File;
import java.util.concurrent.ThreadFactory;

/**
 * Nice values of single threads. Serving a page fault and switching a paused VM over are short bursts
 * a stopped guest waits on; on a host whose cores are busy with bulk page traffic (or with the guest
 * itself) they must not wait for a time slice behind it. Latency-critical threads also ask the EEVDF
 * scheduler (Linux 6.12+) for the shortest time slice, which lets them preempt a running task when they
 * wake: fault latency p50 in the postcopy demo went from 158-216 µs (nice alone, 14 runs) to
 * 158-196 µs (18 runs). Going below nice 0 needs CAP_SYS_NICE; without it the calls change
 * nothing and say so.
 */
public final class ThreadPriority {
    /** The nice value of threads a stopped or faulting guest waits on. */
    public static final int LATENCY_CRITICAL = -10;

    /** Their time slice: the kernel's minimum (a fair task's custom slice is clamped to 0.1-100 ms). */
    public static final long LATENCY_CRITICAL_SLICE_NANOS = 100_000;

    /** The nice value of an observer (a CLI watching a migration on the same host): never in the way. */
    public static final int OBSERVER = 10;

    private ThreadPriority() {}

    /**
     * Sets every thread of this process to {@code nice} (threads started later inherit it from the
     * thread that starts them); returns how many threads took it.
     */
    public static int setProcess(int nice) {
        File[] tasks = new File("/proc/self/task").listFiles();
        int n = 0;
        for (File t : tasks == null ? new File[0] : tasks) {
            try {
                if (LibC.setpriority(LibC.PRIO_PROCESS, Integer.parseInt(t.getName()), nice) == 0) {
                    n++;
                }
            } catch (NumberFormatException e) {
                // not a thread id
            }
        }
        return n;
    }

    /** The calling thread's nice value. */
    public static int current() {
        int raw = LibC.getpriorityRaw(LibC.PRIO_PROCESS, LibC.gettid());
        if (raw < 0) {
            throw new NativeException("getpriority", com.sun.jna.Native.getLastError());
        }
        return 20 - raw;
    }

    /**
     * Sets the calling thread's nice value, with the short time slice at {@link #LATENCY_CRITICAL} and
     * the default one otherwise; false if not permitted (no CAP_SYS_NICE). Below nice 0, threads this one
     * starts begin at nice 0 with the default slice (reset-on-fork), not with its raise: a vCPU thread
     * started inside a raised switchover call inherited nice -10 and the short slice, and as a busy guest
     * it then kept the agents' own threads off its core for 4 ms at a time (sched_switch trace of the
     * destination's resume).
     */
    public static boolean setCurrent(int nice) {
        SchedAttr a = new SchedAttr();
        a.sched_policy = LibC.SCHED_NORMAL;
        a.sched_nice = nice;
        a.sched_flags = nice < 0 ? LibC.SCHED_FLAG_RESET_ON_FORK : 0;
        a.sched_runtime = nice <= LATENCY_CRITICAL ? LATENCY_CRITICAL_SLICE_NANOS : 0;
        if (LibC.schedSetattr(LibC.gettid(), a) == 0) {
            return true;
        }
        return LibC.setpriority(LibC.PRIO_PROCESS, LibC.gettid(), nice) == 0; // a kernel without sched_setattr
    }

    /**
     * Raises the calling thread to {@link #LATENCY_CRITICAL} until the returned handle is closed (on
     * the same thread), which restores the nice value it had.
     */
    public static Raised raise() {
        int before = current();
        return setCurrent(Math.min(before, LATENCY_CRITICAL)) ? new Raised(before) : new Raised(Integer.MIN_VALUE);
    }

    /** Threads that run at {@link #LATENCY_CRITICAL} (where permitted) from their first instruction. */
    public static ThreadFactory latencyCritical(String name) {
        return r -> {
            Thread t = new Thread(() -> {
                setCurrent(LATENCY_CRITICAL);
                r.run();
            }, name);
            t.setDaemon(true);
            return t;
        };
    }

    /** A raised priority; {@link #close()} puts the old one back. */
    public static final class Raised implements AutoCloseable {
        private final int before;

        private Raised(int before) {
            this.before = before;
        }

        /** Whether the raise took effect. */
        public boolean raised() {
            return before != Integer.MIN_VALUE;
        }

        @Override
        public void close() {
            if (raised()) {
                setCurrent(before);
            }
        }
    }
}
