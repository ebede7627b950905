package dev.ferry.linux;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;

/** {@code struct uffdio_range} (linux/userfaultfd.h). */
@FieldOrder({"start", "len"})
public class UffdioRange extends NativeStruct {
    public long start;
    public long len;

    public UffdioRange() {}

    public UffdioRange(long start, long len) {
        this.start = start;
        this.len = len;
    }

    public UffdioRange(Pointer p) {
        super(p);
        read();
    }
}
