package dev.ferry.dataplane;

import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Makes "no more access to guest memory" a guarantee: touching an unmapped guest mapping crashes the JVM, and a
 * data-plane copy can run on a gRPC thread after the round it belongs to has failed (the in-process transport, for
 * one, reads a batch's pages on the receiver's thread). Every copy from or to guest memory runs inside
 * {@link #enter()}/{@link #exit()}; {@link #close()} waits for the copies in progress and refuses all later ones,
 * so once it returns the owner may unmap the memory.
 *
 * <p>A read-write lock rather than a flag, because a flag cannot close the window between checking it and copying.
 * Copies take the shared side once per chunk (at most 64 KiB or one batch), so the cost does not show.
 */
final class MemoryFence {
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private boolean closed; // written under the write lock, read under the read lock

    /** True if memory may be accessed until {@link #exit()}; false once closed (then do not call exit). */
    boolean enter() {
        lock.readLock().lock();
        if (closed) {
            lock.readLock().unlock();
            return false;
        }
        return true;
    }

    void exit() {
        lock.readLock().unlock();
    }

    /** Waits for accesses in progress to end and refuses every later one. Idempotent. */
    void close() {
        lock.writeLock().lock();
        try {
            closed = true;
        } finally {
            lock.writeLock().unlock();
        }
    }
}
