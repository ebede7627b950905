package dev.ferry.linux;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;

/** {@code struct uffdio_zeropage} (linux/userfaultfd.h): for UFFDIO_ZEROPAGE. */
@FieldOrder({"range", "mode", "zeropage"})
public class UffdioZeropage extends NativeStruct {
    public static final int OFF_RANGE_START = 0;
    public static final int OFF_RANGE_LEN = 8;
    public static final int OFF_MODE = 16;
    public static final int OFF_ZEROPAGE = 24;
    public static final int SIZE = 32;

    public UffdioRange range = new UffdioRange();
    /** UFFDIO_ZEROPAGE_MODE_DONTWAKE */
    public long mode;
    /*
     * "zeropage" is written by the ioctl and must be at the end:
     * the copy_from_user will not read the last 8 bytes.
     */
    public long zeropage;

    public UffdioZeropage() {}

    public UffdioZeropage(Pointer p) {
        super(p);
        read();
    }
}
