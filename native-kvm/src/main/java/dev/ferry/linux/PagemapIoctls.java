package dev.ferry.linux;

import static dev.ferry.linux.Ioctl._IOWR;

/** linux/fs.h: the ioctls of /proc/pid/pagemap (PAGEMAP_SCAN, Linux 6.7+) and their flags. */
public final class PagemapIoctls {
    private PagemapIoctls() {}

    /* Pagemap ioctl */
    public static final int PROCFS_IOCTL_MAGIC = 'f';
    public static final long PAGEMAP_SCAN = _IOWR(PROCFS_IOCTL_MAGIC, 16, PmScanArg.SIZE);

    /* Bitmasks provided in pm_scan_args masks and reported in page_region.categories. */
    public static final long PAGE_IS_WPALLOWED = 1 << 0;
    public static final long PAGE_IS_WRITTEN = 1 << 1;
    public static final long PAGE_IS_FILE = 1 << 2;
    public static final long PAGE_IS_PRESENT = 1 << 3;
    public static final long PAGE_IS_SWAPPED = 1 << 4;
    public static final long PAGE_IS_PFNZERO = 1 << 5;
    public static final long PAGE_IS_HUGE = 1 << 6;
    public static final long PAGE_IS_SOFT_DIRTY = 1 << 7;

    /* Flags for PAGEMAP_SCAN ioctl */
    public static final long PM_SCAN_WP_MATCHING = 1 << 0; /* Write protect the pages matched. */
    public static final long PM_SCAN_CHECK_WPASYNC = 1 << 1; /* Abort the scan when a non-WP-enabled page is found. */
}
