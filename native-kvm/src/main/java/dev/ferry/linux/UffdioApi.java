package dev.ferry.linux;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;

/** {@code struct uffdio_api} (linux/userfaultfd.h): the UFFDIO_API handshake. */
@FieldOrder({"api", "features", "ioctls"})
public class UffdioApi extends NativeStruct {
    /* userland asks for an API number and the features to enable */
    public long api;
    /* kernel answers with the available features (UFFD_FEATURE_*) */
    public long features;
    /* kernel answers with the available ioctls, bit _UFFDIO_* set */
    public long ioctls;

    public UffdioApi() {}

    public UffdioApi(Pointer p) {
        super(p);
        read();
    }
}
