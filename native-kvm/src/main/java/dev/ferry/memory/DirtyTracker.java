package dev.ferry.memory;

/**
 * Which pages a guest writes, harvested in rounds: KVM's dirty log, or userfaultfd write-protect with
 * PAGEMAP_SCAN for a process guest. What counts is a write through the mapping the guest runs on: on KVM
 * the guest's own writes only; a process guest shares its mapping with the VMM, so the VMM's writes into a
 * running process guest count too (it makes none but the answers to the guest's port I/O). Pages placed by
 * userfaultfd through a {@link MissingPageTrap} never count. Writes through another mapping of the same
 * memfd never count on either backend.
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
