package dev.ferry.linux;

import static dev.ferry.linux.Ioctl._IO;
import static dev.ferry.linux.Ioctl._IOR;
import static dev.ferry.linux.Ioctl._IOWR;

import com.sun.jna.Structure;

/** linux/userfaultfd.h: ioctl numbers, API, features, events and modes. */
public final class UffdIoctls {
    private UffdIoctls() {}

    private static int sizeof(Class<? extends Structure> type) {
        return Structure.newInstance(type).size();
    }

    /* ioctls for /dev/userfaultfd */
    public static final int USERFAULTFD_IOC = 0xAA;
    public static final long USERFAULTFD_IOC_NEW = _IO(USERFAULTFD_IOC, 0x00);

    public static final long UFFD_API = 0xAA;

    /*
     * Valid ioctl command number range with this API is from 0x00 to
     * 0x3F.  UFFDIO_API is the fixed number, everything else can be
     * changed by implementing a different UFFD_API.
     */
    public static final int _UFFDIO_REGISTER = 0x00;
    public static final int _UFFDIO_UNREGISTER = 0x01;
    public static final int _UFFDIO_WAKE = 0x02;
    public static final int _UFFDIO_COPY = 0x03;
    public static final int _UFFDIO_ZEROPAGE = 0x04;
    public static final int _UFFDIO_WRITEPROTECT = 0x06;
    public static final int _UFFDIO_CONTINUE = 0x07;
    public static final int _UFFDIO_API = 0x3F;

    /* userfaultfd ioctl ids */
    public static final int UFFDIO = 0xAA;
    public static final long UFFDIO_API = _IOWR(UFFDIO, _UFFDIO_API, sizeof(UffdioApi.class));
    public static final long UFFDIO_REGISTER = _IOWR(UFFDIO, _UFFDIO_REGISTER, sizeof(UffdioRegister.class));
    /* _IOR although the kernel reads: see the note in userfaultfd.h */
    public static final long UFFDIO_UNREGISTER = _IOR(UFFDIO, _UFFDIO_UNREGISTER, sizeof(UffdioRange.class));
    public static final long UFFDIO_WAKE = _IOR(UFFDIO, _UFFDIO_WAKE, sizeof(UffdioRange.class));
    public static final long UFFDIO_COPY = _IOWR(UFFDIO, _UFFDIO_COPY, sizeof(UffdioCopy.class));
    public static final long UFFDIO_ZEROPAGE = _IOWR(UFFDIO, _UFFDIO_ZEROPAGE, sizeof(UffdioZeropage.class));
    public static final long UFFDIO_WRITEPROTECT = _IOWR(UFFDIO, _UFFDIO_WRITEPROTECT, sizeof(UffdioWriteprotect.class));
    public static final long UFFDIO_CONTINUE = _IOWR(UFFDIO, _UFFDIO_CONTINUE, sizeof(UffdioContinue.class));

    /* uffd_msg.event; start at 0x12 and not at 0 to be more strict against bugs */
    public static final int UFFD_EVENT_PAGEFAULT = 0x12;
    public static final int UFFD_EVENT_FORK = 0x13;
    public static final int UFFD_EVENT_REMAP = 0x14;
    public static final int UFFD_EVENT_REMOVE = 0x15;
    public static final int UFFD_EVENT_UNMAP = 0x16;

    /* flags for UFFD_EVENT_PAGEFAULT */
    public static final long UFFD_PAGEFAULT_FLAG_WRITE = 1 << 0; /* If this was a write fault */
    public static final long UFFD_PAGEFAULT_FLAG_WP = 1 << 1; /* If reason is VM_UFFD_WP */
    public static final long UFFD_PAGEFAULT_FLAG_MINOR = 1 << 2; /* If reason is VM_UFFD_MINOR */

    /* uffdio_api.features */
    public static final long UFFD_FEATURE_PAGEFAULT_FLAG_WP = 1 << 0;
    public static final long UFFD_FEATURE_EVENT_FORK = 1 << 1;
    public static final long UFFD_FEATURE_EVENT_REMAP = 1 << 2;
    public static final long UFFD_FEATURE_EVENT_REMOVE = 1 << 3;
    public static final long UFFD_FEATURE_MISSING_HUGETLBFS = 1 << 4;
    public static final long UFFD_FEATURE_MISSING_SHMEM = 1 << 5;
    public static final long UFFD_FEATURE_EVENT_UNMAP = 1 << 6;
    public static final long UFFD_FEATURE_SIGBUS = 1 << 7;
    public static final long UFFD_FEATURE_THREAD_ID = 1 << 8;
    public static final long UFFD_FEATURE_MINOR_HUGETLBFS = 1 << 9;
    public static final long UFFD_FEATURE_MINOR_SHMEM = 1 << 10;
    public static final long UFFD_FEATURE_EXACT_ADDRESS = 1 << 11;
    public static final long UFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1 << 12;
    /*
     * UFFD_FEATURE_WP_UNPOPULATED indicates that userfaultfd
     * write-protection mode will always apply to unpopulated pages
     * (i.e. empty ptes).  This will be the default behavior for shmem
     * & hugetlbfs, so this flag only affects anonymous memory behavior
     * when userfault write-protection mode is registered.
     */
    public static final long UFFD_FEATURE_WP_UNPOPULATED = 1 << 13;
    /*
     * UFFD_FEATURE_WP_ASYNC indicates that userfaultfd write-protection
     * asynchronous mode is supported in which the write fault is
     * automatically resolved and write-protection is un-set.
     * It implies UFFD_FEATURE_WP_UNPOPULATED.
     */
    public static final long UFFD_FEATURE_WP_ASYNC = 1 << 15;

    /* uffdio_register.mode */
    public static final long UFFDIO_REGISTER_MODE_MISSING = 1L << 0;
    public static final long UFFDIO_REGISTER_MODE_WP = 1L << 1;
    public static final long UFFDIO_REGISTER_MODE_MINOR = 1L << 2;

    /* uffdio_copy.mode */
    public static final long UFFDIO_COPY_MODE_DONTWAKE = 1L << 0;
    public static final long UFFDIO_COPY_MODE_WP = 1L << 1;
    /* uffdio_zeropage.mode */
    public static final long UFFDIO_ZEROPAGE_MODE_DONTWAKE = 1L << 0;
    /* uffdio_writeprotect.mode */
    public static final long UFFDIO_WRITEPROTECT_MODE_WP = 1L << 0;
    public static final long UFFDIO_WRITEPROTECT_MODE_DONTWAKE = 1L << 1;
    /* uffdio_continue.mode */
    public static final long UFFDIO_CONTINUE_MODE_DONTWAKE = 1L << 0;
    /* map the page write protected on the fly (needs UFFDIO_WRITEPROTECT on the range) */
    public static final long UFFDIO_CONTINUE_MODE_WP = 1L << 1;

    /* Flags for the userfaultfd(2) system call itself: handle faults in user mode only. */
    public static final int UFFD_USER_MODE_ONLY = 1;

    /** Name of a UFFD_EVENT_* value. */
    public static String eventName(int event) {
        return switch (event) {
            case UFFD_EVENT_PAGEFAULT -> "UFFD_EVENT_PAGEFAULT";
            case UFFD_EVENT_FORK -> "UFFD_EVENT_FORK";
            case UFFD_EVENT_REMAP -> "UFFD_EVENT_REMAP";
            case UFFD_EVENT_REMOVE -> "UFFD_EVENT_REMOVE";
            case UFFD_EVENT_UNMAP -> "UFFD_EVENT_UNMAP";
            default -> "UFFD_EVENT_#" + event;
        };
    }
}
