package dev.ferry.linux;

/**
 * A decoded {@code uffd_msg}, mutable so the fault loop can reuse one instance
 * ({@link Userfaultfd#readEvent(UffdEvent)}). Which fields are meaningful depends on {@link #event}.
 */
public final class UffdEvent {
    /** UFFD_EVENT_*. */
    public int event;
    /** PAGEFAULT: UFFD_PAGEFAULT_FLAG_* (WRITE, WP, MINOR). */
    public long flags;
    /** PAGEFAULT: faulting address (page-aligned unless UFFD_FEATURE_EXACT_ADDRESS). */
    public long address;
    /** PAGEFAULT with UFFD_FEATURE_THREAD_ID: tid of the faulting thread. */
    public int ptid;
    /** REMOVE/UNMAP: start; REMAP: from; FORK: the new uffd. */
    public long arg0;
    /** REMOVE/UNMAP: end; REMAP: to. */
    public long arg1;
    /** REMAP: len. */
    public long arg2;

    public boolean isPagefault() {
        return event == UffdIoctls.UFFD_EVENT_PAGEFAULT;
    }

    public boolean isWrite() {
        return (flags & UffdIoctls.UFFD_PAGEFAULT_FLAG_WRITE) != 0;
    }

    @Override
    public String toString() {
        if (isPagefault()) {
            return String.format("%s{addr=0x%x flags=0x%x ptid=%d}", UffdIoctls.eventName(event), address, flags, ptid);
        }
        return String.format("%s{0x%x, 0x%x, 0x%x}", UffdIoctls.eventName(event), arg0, arg1, arg2);
    }
}
