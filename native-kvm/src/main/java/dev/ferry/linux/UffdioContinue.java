package dev.ferry.linux;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;

/** {@code struct uffdio_continue} (linux/userfaultfd.h): for UFFDIO_CONTINUE (minor faults). */
@FieldOrder({"range", "mode", "mapped"})
public class UffdioContinue extends NativeStruct {
    public static final int OFF_RANGE_START = 0;
    public static final int OFF_RANGE_LEN = 8;
    public static final int OFF_MODE = 16;
    public static final int OFF_MAPPED = 24;
    public static final int SIZE = 32;

    public UffdioRange range = new UffdioRange();
    /** UFFDIO_CONTINUE_MODE_DONTWAKE */
    public long mode;
    /*
     * Fields below here are written by the ioctl and must be at the end:
     * the copy_from_user will not read past here.
     */
    public long mapped;

    public UffdioContinue() {}

    public UffdioContinue(Pointer p) {
        super(p);
        read();
    }
}
