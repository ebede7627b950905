package dev.ferry.linux;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;

/** {@code struct uffdio_register} (linux/userfaultfd.h): for UFFDIO_REGISTER. */
@FieldOrder({"range", "mode", "ioctls"})
public class UffdioRegister extends NativeStruct {
    public UffdioRange range = new UffdioRange();
    /** UFFDIO_REGISTER_MODE_MISSING / _WP / _MINOR */
    public long mode;
    /*
     * kernel answers which ioctl commands are available for the
     * range, keep at the end as the last 8 bytes aren't read.
     */
    public long ioctls;

    public UffdioRegister() {}

    public UffdioRegister(Pointer p) {
        super(p);
        read();
    }
}
