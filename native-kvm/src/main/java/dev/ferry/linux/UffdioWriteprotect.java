package dev.ferry.linux;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;

/** {@code struct uffdio_writeprotect} (linux/userfaultfd.h): for UFFDIO_WRITEPROTECT. */
@FieldOrder({"range", "mode"})
public class UffdioWriteprotect extends NativeStruct {
    public UffdioRange range = new UffdioRange();
    /** UFFDIO_WRITEPROTECT_MODE_WP / _DONTWAKE */
    public long mode;

    public UffdioWriteprotect() {}

    public UffdioWriteprotect(Pointer p) {
        super(p);
        read();
    }
}
