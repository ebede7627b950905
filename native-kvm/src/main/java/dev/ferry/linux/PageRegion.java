package dev.ferry.linux;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;

/**
 * {@code struct page_region} (linux/fs.h, Linux 6.7+): one run of pages PAGEMAP_SCAN reports, all
 * with the same categories. {@link PagemapScanner} reads an array of them at the OFF_* offsets
 * below (checked against gcc by StructLayoutTest) without allocating.
 */
@FieldOrder({"start", "end", "categories"})
public class PageRegion extends NativeStruct {
    public static final int OFF_START = 0;
    public static final int OFF_END = 8;
    public static final int OFF_CATEGORIES = 16;
    public static final int SIZE = 24;

    /** Start of the region */
    public long start;
    /** End of the region (exclusive) */
    public long end;
    /** PAGE_IS_* category bitmask for the region */
    public long categories;

    public PageRegion() {}

    public PageRegion(Pointer p) {
        super(p);
        read();
    }
}
