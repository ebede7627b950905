package dev.ferry.memory;

/**
 * Which pages a guest writes, harvested in rounds: KVM's dirty log, or userfaultfd write-protect with
 * PAGEMAP_SCAN for a process guest. Only the guest's own writes count, not the VMM's.
 */
public interface DirtyTracker {
    /** From here on every page the guest writes is reported by the next {@link #fetchAndClear()}. */
    void enable();

    /** Stops tracking; the guest writes at full speed again. */
    void disable();

    boolean enabled();

    /** Pages written since the last harvest (or {@link #enable()}); they count as clean again after it. */
    DirtyBitmap fetchAndClear();

    /** Pages written since the last harvest, leaving them dirty: each call reports a superset of the last. */
    DirtyBitmap fetch();
}
