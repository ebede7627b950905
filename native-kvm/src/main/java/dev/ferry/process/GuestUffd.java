package dev.ferry.process;

import dev.ferry.linux.LibC;
import dev.ferry.linux.UffdIoctls;
import dev.ferry.linux.Userfaultfd;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;

/**
 * The one userfaultfd over a process guest's memory. A mapping can be registered with one userfaultfd
 * only, and the guest's threads touch the very mappings that postcopy must trap (MISSING) and dirty
 * tracking must write-protect (WP, asynchronous): so both share this one, and it registers the union of
 * what its users need. Modes are added as users come; they are dropped only when no user is left,
 * because dropping one means unregistering the range, which would lose the other's state.
 */
final class GuestUffd implements AutoCloseable {
    static final long FEATURES = UffdIoctls.UFFD_FEATURE_MISSING_SHMEM | UffdIoctls.UFFD_FEATURE_MINOR_SHMEM
            | UffdIoctls.UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UffdIoctls.UFFD_FEATURE_WP_ASYNC;

    private final GuestMemory memory;
    private final Userfaultfd uffd;
    // Guarded by this.
    private long registered;
    private int missingUsers;
    private int wpUsers;

    GuestUffd(GuestMemory memory) {
        this.memory = memory;
        this.uffd = Userfaultfd.open(LibC.O_CLOEXEC | LibC.O_NONBLOCK, FEATURES);
    }

    Userfaultfd uffd() {
        return uffd;
    }

    /** Registers WP (dirty tracking). */
    synchronized void acquireWriteProtect() {
        wpUsers++;
        require(UffdIoctls.UFFDIO_REGISTER_MODE_WP);
    }

    synchronized void releaseWriteProtect() {
        wpUsers--;
        releaseIfUnused();
    }

    /**
     * Registers MISSING and MINOR (see {@link dev.ferry.memory.MissingPageTrap}), together with WP: pages are
     * then placed with UFFDIO_COPY_MODE_WP or UFFDIO_CONTINUE_MODE_WP, so that a placed page never counts as
     * written by the guest, whether tracking is on now or turned on later.
     */
    synchronized void acquireMissing() {
        missingUsers++;
        try {
            require(UffdIoctls.UFFDIO_REGISTER_MODE_MISSING | UffdIoctls.UFFDIO_REGISTER_MODE_MINOR
                    | UffdIoctls.UFFDIO_REGISTER_MODE_WP);
        } catch (RuntimeException e) {
            missingUsers--;
            throw e;
        }
    }

    synchronized void releaseMissing() {
        missingUsers--;
        releaseIfUnused();
    }

    /** Registering a superset replaces the modes in place; nothing is lost. */
    private void require(long modes) {
        long want = registered | modes;
        if (want == registered) {
            return;
        }
        for (MemoryRegion r : memory.regions()) {
            long ioctls = uffd.register(r.mapping().address(), r.size(), want);
            if ((want & UffdIoctls.UFFDIO_REGISTER_MODE_MINOR) != 0
                    && (ioctls & (1L << UffdIoctls._UFFDIO_CONTINUE)) == 0) {
                throw new IllegalStateException("userfaultfd offers no UFFDIO_CONTINUE on slot " + r.slot());
            }
        }
        registered = want;
    }

    private void releaseIfUnused() {
        if (missingUsers > 0 || wpUsers > 0 || registered == 0 || uffd.isClosed()) {
            return; // still needed, nothing registered, or the VM closed it (which dropped everything)
        }
        for (MemoryRegion r : memory.regions()) {
            uffd.unregister(r.mapping().address(), r.size());
        }
        registered = 0;
    }

    /** Drops every registration; idempotent. */
    @Override
    public void close() {
        uffd.close();
    }
}
