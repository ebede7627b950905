package dev.ferry.memory;

import dev.ferry.linux.LibC;
import dev.ferry.linux.UffdIoctls;
import dev.ferry.linux.Userfaultfd;

/**
 * A userfaultfd registered in MISSING and MINOR mode over every region of a guest's memory, as the
 * guest touches it: a touch of a page not in memory blocks until the page is placed with UFFDIO_COPY
 * or UFFDIO_ZEROPAGE through {@link #uffd()}, and a touch of a page that is in the memfd but not
 * mapped here (written through an alias, or its page-table entry dropped) blocks until it is mapped
 * with UFFDIO_CONTINUE: stale bytes can stay in memory and still trap. The postcopy pager and on-demand restore place pages
 * through a trap; the VM decides how it is set up ({@link dev.ferry.vm.Migratable#trapMissingPages}).
 */
public interface MissingPageTrap extends AutoCloseable {
    /** The userfaultfd to read faults from and to place pages through. */
    Userfaultfd uffd();

    /**
     * Whether pages must be placed write-protected (UFFDIO_COPY_MODE_WP, never UFFDIO_ZEROPAGE): true
     * where the same userfaultfd tracks the guest's writes, so that a placed page does not count as
     * written by the guest.
     */
    boolean placeWriteProtected();

    /** Stops trapping: pages missing now read as zero from here on. Idempotent. */
    @Override
    void close();

    /** A trap with a userfaultfd of its own over {@code memory}'s region mappings (what a KVM guest touches). */
    static MissingPageTrap open(GuestMemory memory) {
        Userfaultfd u = Userfaultfd.open(LibC.O_CLOEXEC | LibC.O_NONBLOCK,
                UffdIoctls.UFFD_FEATURE_MISSING_SHMEM | UffdIoctls.UFFD_FEATURE_MINOR_SHMEM);
        try {
            for (MemoryRegion r : memory.regions()) {
                if (r.mapping().fd() < 0) {
                    throw new IllegalArgumentException("trapping missing pages needs memfd-backed memory; slot "
                            + r.slot() + " is not");
                }
                long ioctls = u.register(r.mapping().address(), r.size(),
                        UffdIoctls.UFFDIO_REGISTER_MODE_MISSING | UffdIoctls.UFFDIO_REGISTER_MODE_MINOR);
                requireResolvers(ioctls, r);
            }
        } catch (RuntimeException e) {
            u.close();
            throw e;
        }
        return new MissingPageTrap() {
            @Override
            public Userfaultfd uffd() {
                return u;
            }

            @Override
            public boolean placeWriteProtected() {
                return false;
            }

            @Override
            public void close() {
                if (u.isClosed()) {
                    return;
                }
                for (MemoryRegion r : memory.regions()) {
                    try {
                        u.unregister(r.mapping().address(), r.size());
                    } catch (RuntimeException e) {
                        // closing the fd below drops the registration anyway
                    }
                }
                u.close();
            }
        };
    }

    /** Every ioctl a trap's user resolves faults with must be offered on the registered range. */
    static void requireResolvers(long ioctls, MemoryRegion r) {
        for (int op : new int[] {UffdIoctls._UFFDIO_COPY, UffdIoctls._UFFDIO_ZEROPAGE, UffdIoctls._UFFDIO_CONTINUE}) {
            if ((ioctls & (1L << op)) == 0) {
                throw new IllegalStateException("userfaultfd offers no UFFDIO_COPY, ZEROPAGE or CONTINUE on slot "
                        + r.slot() + " (Linux 5.14 or later with shmem MINOR faults is needed)");
            }
        }
    }
}
