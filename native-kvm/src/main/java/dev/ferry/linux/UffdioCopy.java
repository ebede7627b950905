package dev.ferry.linux;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;

/** {@code struct uffdio_copy} (linux/userfaultfd.h): for UFFDIO_COPY. */
@FieldOrder({"dst", "src", "len", "mode", "copy"})
public class UffdioCopy extends NativeStruct {
    public static final int OFF_DST = 0;
    public static final int OFF_SRC = 8;
    public static final int OFF_LEN = 16;
    public static final int OFF_MODE = 24;
    public static final int OFF_COPY = 32;
    public static final int SIZE = 40;

    public long dst;
    public long src;
    public long len;
    /** UFFDIO_COPY_MODE_DONTWAKE / _WP */
    public long mode;
    /*
     * "copy" is written by the ioctl and must be at the end: the
     * copy_from_user will not read the last 8 bytes.
     */
    public long copy;

    public UffdioCopy() {}

    public UffdioCopy(Pointer p) {
        super(p);
        read();
    }
}
