package dev.ferry.vm;

import dev.ferry.memory.DirtyTracker;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MissingPageTrap;

/** A {@link Snapshottable} guest whose memory can be copied while it runs, or fetched after it moved. */
public interface Migratable extends Snapshottable {
    /** Guest RAM, memfd-backed; its region mappings are what the guest itself touches. */
    GuestMemory memory();

    /** Which pages the guest writes (precopy rounds; the unwritten-page check after a resume). */
    DirtyTracker dirtyTracker();

    /**
     * Starts catching the guest's touches of pages that are not in its memory (postcopy, on-demand
     * restore): from here on such a touch blocks until the page is placed through the trap.
     */
    MissingPageTrap trapMissingPages();
}
