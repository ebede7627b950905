package dev.ferry.dataplane.postcopy;

import dev.ferry.memory.GuestMemory;
import java.util.Objects;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A {@link PageSource} over a GuestMemory, with a memory fence: after {@link #close()} returns, nothing of the pager
 * service reads the memory any more (reads in progress have ended, later ones are refused and their streams end with
 * FAILED_PRECONDITION), so the owner may unmap it. Touching an unmapped mapping crashes the JVM, and with the
 * in-process transport a reply's pages are read on the receiver's thread, after the handler has returned.
 *
 * <p>Counts what it served; forwards every served fault to an optional {@link FaultListener} (the background push).
 */
public final class MemoryPageSource implements PageSource, AutoCloseable {
    /** Told about every served fault; see {@link PageSource#faulted}. */
    @FunctionalInterface
    public interface FaultListener {
        void faulted(long gpa, long pages);
    }

    private final GuestMemory memory;
    private final FaultListener listener;
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private boolean closed; // written under the write lock, read under the read lock
    private final LongAdder faults = new LongAdder();
    private final LongAdder pages = new LongAdder();

    public MemoryPageSource(GuestMemory memory) {
        this(memory, (gpa, n) -> { });
    }

    public MemoryPageSource(GuestMemory memory, FaultListener listener) {
        this.memory = Objects.requireNonNull(memory, "memory");
        this.listener = Objects.requireNonNull(listener, "listener");
    }

    @Override
    public GuestMemory memory() {
        return memory;
    }

    @Override
    public void faulted(long gpa, long n) {
        faults.increment();
        pages.add(n);
        listener.faulted(gpa, n);
    }

    @Override
    public boolean enterMemory() {
        lock.readLock().lock();
        if (closed) {
            lock.readLock().unlock();
            return false;
        }
        return true;
    }

    @Override
    public void exitMemory() {
        lock.readLock().unlock();
    }

    /** Faults served so far. */
    public long faultsServed() {
        return faults.sum();
    }

    /** 4 KiB pages carried by fault replies so far. */
    public long pagesServed() {
        return pages.sum();
    }

    /** Waits for reads in progress and refuses all later ones. Idempotent. */
    @Override
    public void close() {
        lock.writeLock().lock();
        try {
            closed = true;
        } finally {
            lock.writeLock().unlock();
        }
    }
}
