package dev.ferry.linux;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;

/**
 * {@code struct pm_scan_arg} (linux/fs.h, Linux 6.7+): the argument of ioctl(PAGEMAP_SCAN) on
 * /proc/pid/pagemap. {@link PagemapScanner} does not use this class on its hot path but writes the
 * same bytes at the OFF_* offsets below (checked against gcc by StructLayoutTest).
 */
@FieldOrder({"size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages",
        "category_inverted", "category_mask", "category_anyof_mask", "return_mask"})
public class PmScanArg extends NativeStruct {
    public static final int OFF_SIZE = 0;
    public static final int OFF_FLAGS = 8;
    public static final int OFF_START = 16;
    public static final int OFF_END = 24;
    public static final int OFF_WALK_END = 32;
    public static final int OFF_VEC = 40;
    public static final int OFF_VEC_LEN = 48;
    public static final int OFF_MAX_PAGES = 56;
    public static final int OFF_CATEGORY_INVERTED = 64;
    public static final int OFF_CATEGORY_MASK = 72;
    public static final int OFF_CATEGORY_ANYOF_MASK = 80;
    public static final int OFF_RETURN_MASK = 88;
    public static final int SIZE = 96;

    /** Size of the structure: the kernel refuses any other value with EINVAL */
    public long size;
    /** Flags for the IOCTL: PM_SCAN_* */
    public long flags;
    /** Starting address of the region */
    public long start;
    /** Ending address of the region */
    public long end;
    /**
     * Address where the scan stopped (written by kernel). walk_end == end (address tags cleared)
     * informs that the scan completed on entire range.
     */
    public long walk_end;
    /** Address of page_region struct array for output */
    public long vec;
    /** Length of the page_region struct array */
    public long vec_len;
    /** Optional limit for number of returned pages (0 = disabled) */
    public long max_pages;
    /** PAGE_IS_* categories which values match if 0 instead of 1 */
    public long category_inverted;
    /** Skip pages for which any category doesn't match */
    public long category_mask;
    /** Skip pages for which no category matches */
    public long category_anyof_mask;
    /** PAGE_IS_* categories that are to be reported in `page_region`s returned */
    public long return_mask;

    public PmScanArg() {}

    public PmScanArg(Pointer p) {
        super(p);
        read();
    }
}
