package dev.ferry.linux;

import com.sun.jna.Memory;
import com.sun.jna.Native;

/**
 * Signal plumbing for kicking vCPU threads out of KVM_RUN without installing a signal handler
 * into the JVM.
 *
 * <h2>The kick scheme</h2>
 * <ol>
 *   <li>The vCPU thread blocks {@link #KICK_SIGNAL} in its own signal mask
 *       ({@link #blockOnCurrentThread(int)}), so the signal can never be delivered to it in user
 *       space, where its default action (terminate the process) would run.</li>
 *   <li>It then calls {@link KvmVcpu#setSignalMask(int...) KVM_SET_SIGNAL_MASK} with its mask
 *       minus KICK_SIGNAL. KVM swaps that mask in only for the duration of KVM_RUN.</li>
 *   <li>To kick, another thread calls {@link #kick(int, int) tgkill(pid, vcpuTid, KICK_SIGNAL)}.
 *       If the vCPU is in KVM_RUN (even in a tight ring-3 guest loop, where no exit would come
 *       otherwise) the signal is unblocked there, so the CPU is forced out of the guest and
 *       KVM_RUN returns EINTR. If the thread is anywhere else the signal stays pending, and the
 *       next KVM_RUN returns EINTR at once: a kick is never lost.</li>
 *   <li>On the way out KVM restores the thread's own mask, in which the signal is blocked, so it
 *       is not delivered but stays pending. The vCPU thread eats it with
 *       {@link #consumePending(int) sigtimedwait} (zero timeout) so the following KVM_RUN does not
 *       exit spuriously.</li>
 * </ol>
 * Only thread-directed signals (tgkill) are used: a process-directed KICK_SIGNAL would be taken by
 * any thread that does not block it and kill the JVM. The JVM itself uses no real-time signals.
 *
 * <p><b>Never kick a tid whose thread may have exited.</b> Tids are recycled; a new thread that
 * does not block KICK_SIGNAL would take its default action and terminate the process.
 * {@link KickTarget} packages the block / kick / retire discipline that rules this out.
 *
 * <p>Sets: the kernel's sigset_t is 8 bytes on x86-64 (bit n-1 = signal n, what
 * KVM_SET_SIGNAL_MASK wants); glibc's sigset_t is 128 bytes whose first 8 bytes are that same
 * kernel set (what pthread_sigmask / sigtimedwait want).
 */
public final class Signals {
    private Signals() {}

    /** sizeof(sigset_t) in glibc. */
    public static final int GLIBC_SIGSET_SIZE = 128;
    /** sizeof(kernel sigset_t) on x86-64: _NSIG / 8 (64 signals; signal n is bit n-1). */
    public static final int KERNEL_SIGSET_SIZE = 8;

    /** SIGRTMIN as glibc reports it ({@code __libc_current_sigrtmin()}, 34 with NPTL). */
    public static final int SIGRTMIN = LibC.__libc_current_sigrtmin();
    /** SIGRTMAX as glibc reports it. */
    public static final int SIGRTMAX = LibC.__libc_current_sigrtmax();

    /** The vCPU kick signal, SIGRTMIN+6 (unused by the JVM and by glibc). */
    public static final int KICK_SIGNAL = SIGRTMIN + 6;

    /** Kernel sigset bits (bit n-1 for signal n) of {@code sigs}. */
    public static long kernelSigsetBits(int... sigs) {
        long bits = 0;
        for (int sig : sigs) {
            if (sig < 1 || sig > 64) {
                throw new IllegalArgumentException("signal out of range: " + sig);
            }
            bits |= 1L << (sig - 1);
        }
        return bits;
    }

    /** An 8-byte kernel sigset_t holding {@code bits}. */
    public static Memory kernelSigset(long bits) {
        Memory m = new Memory(KERNEL_SIGSET_SIZE);
        m.setLong(0, bits);
        return m;
    }

    /** A 128-byte glibc sigset_t containing {@code sigs} (built with sigemptyset/sigaddset). */
    public static Memory glibcSigset(int... sigs) {
        Memory m = new Memory(GLIBC_SIGSET_SIZE);
        NativeException.check(LibC.sigemptyset(m), "sigemptyset");
        for (int sig : sigs) {
            NativeException.check(LibC.sigaddset(m, sig), "sigaddset(" + sig + ")");
        }
        return m;
    }

    /** The calling thread's blocked mask as kernel sigset bits. */
    public static long currentThreadMask() {
        Memory old = new Memory(GLIBC_SIGSET_SIZE);
        old.clear();
        checkErrnoReturn(LibC.pthread_sigmask(LibC.SIG_BLOCK, null, old), "pthread_sigmask");
        return old.getLong(0);
    }

    /** Blocks {@code sig} in the calling thread's mask. */
    public static void blockOnCurrentThread(int sig) {
        checkErrnoReturn(LibC.pthread_sigmask(LibC.SIG_BLOCK, glibcSigset(sig), null), "pthread_sigmask(SIG_BLOCK)");
    }

    /** Unblocks {@code sig} in the calling thread's mask (a pending one is then delivered!). */
    public static void unblockOnCurrentThread(int sig) {
        checkErrnoReturn(LibC.pthread_sigmask(LibC.SIG_UNBLOCK, glibcSigset(sig), null), "pthread_sigmask(SIG_UNBLOCK)");
    }

    /** True when {@code sig} is blocked in the calling thread's mask. */
    public static boolean isBlockedOnCurrentThread(int sig) {
        return (currentThreadMask() & kernelSigsetBits(sig)) != 0;
    }

    /** Kernel thread id of the calling thread (gettid). */
    public static int currentThreadId() {
        return LibC.gettid();
    }

    /** tgkill(getpid(), tid, sig): a thread-directed signal. ESRCH if the thread is gone. */
    public static void kick(int tid, int sig) {
        NativeException.check(LibC.tgkill(LibC.getpid(), tid, sig), "tgkill(" + tid + ", " + sig + ")");
    }

    /** True when {@code sig} is pending for the calling thread or the process (sigpending). */
    public static boolean isPending(int sig) {
        Memory set = new Memory(GLIBC_SIGSET_SIZE);
        set.clear();
        NativeException.check(LibC.sigpending(set), "sigpending");
        return (set.getLong(0) & kernelSigsetBits(sig)) != 0;
    }

    /**
     * Dequeues a pending {@code sig} of the calling thread without waiting (sigtimedwait with a
     * zero timeout): true if one was pending (and is now consumed), false on EAGAIN. The signal
     * must be blocked on this thread. Real-time signals queue, so call until false to drain.
     */
    public static boolean consumePending(int sig) {
        Memory set = glibcSigset(sig);
        Memory zeroTimeout = new Memory(16); // struct timespec { tv_sec, tv_nsec }
        zeroTimeout.clear();
        while (true) {
            int rc = LibC.sigtimedwait(set, null, zeroTimeout);
            if (rc == sig) {
                return true;
            }
            if (rc >= 0) {
                throw new IllegalStateException("sigtimedwait returned signal " + rc + ", asked for " + sig);
            }
            int errno = Native.getLastError();
            if (errno == Errno.EAGAIN) {
                return false;
            }
            if (errno != Errno.EINTR) {
                throw new NativeException("sigtimedwait", errno);
            }
        }
    }

    /** Drains every pending instance of {@code sig}; returns how many were consumed. */
    public static int drainPending(int sig) {
        int n = 0;
        while (consumePending(sig)) {
            n++;
        }
        return n;
    }

    /** pthread_* functions return the error number instead of setting errno. */
    private static void checkErrnoReturn(int rc, String op) {
        if (rc != 0) {
            throw new NativeException(op, rc);
        }
    }
}
