package dev.ferry.guest;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;

/** The guest workload image built from src/main/guest by the Maven build (make + gcc). */
public final class GuestImage {
    private static final String RESOURCE = "guest.bin";
    private static volatile byte[] cached;

    private GuestImage() {}

    public static byte[] bytes() {
        byte[] b = cached;
        if (b == null) {
            try (InputStream in = GuestImage.class.getResourceAsStream(RESOURCE)) {
                if (in == null) {
                    throw new IllegalStateException("guest image " + RESOURCE
                            + " is missing from the classpath: build native-kvm with Maven (it runs make in src/main/guest)");
                }
                b = in.readAllBytes();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            if (b.length == 0 || b.length > GuestAbi.CODE_MAX) {
                throw new IllegalStateException("guest image has a bad size: " + b.length);
            }
            cached = b;
        }
        return b.clone();
    }
}
