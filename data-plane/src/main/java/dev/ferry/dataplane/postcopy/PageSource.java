package dev.ferry.dataplane.postcopy;

import dev.ferry.memory.GuestMemory;

/**
 * The source side of one postcopy migration, as {@link PagerServer} sees it: the paused source VM's memory, from
 * which the destination's faults are answered, and a hook telling the background push which pages faults carried.
 *
 * <p>{@link MemoryPageSource} is the ready implementation (with a memory fence for unmapping safely).
 *
 * <p>Thread-safety: called from gRPC threads, several calls at once.
 */
public interface PageSource {
    /**
     * The source guest memory. Read by the pager service only between {@link #enterMemory()} and {@link #exitMemory()}.
     * May throw {@link IllegalStateException} when the migration does not serve faults now (not in postcopy): the
     * call then fails with FAILED_PRECONDITION.
     */
    GuestMemory memory();

    /**
     * Called for every fault served, just before its (last) reply is handed to gRPC, so the background push can go
     * near recent faults first and skip the pages the reply carries. {@code pages} counts 4 KiB pages. Must be quick
     * and must not throw (exceptions are ignored).
     */
    void faulted(long gpa, long pages);

    /**
     * Brackets every read of {@link #memory()}: true if the memory may be read until {@link #exitMemory()}; false once
     * the session has stopped serving (the stream then ends with FAILED_PRECONDITION, and exitMemory is not called).
     * Default: always true, for sources whose memory outlives the server.
     */
    default boolean enterMemory() {
        return true;
    }

    /** Ends a read begun by a successful {@link #enterMemory()}. */
    default void exitMemory() {
    }
}
