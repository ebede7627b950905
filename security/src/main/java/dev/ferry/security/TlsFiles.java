package dev.ferry.security;

import java.nio.file.Files;
import java.nio.file.Path;

/** Where a party's PEM certificate chain, private key and trusted CA bundle live. */
public record TlsFiles(Path cert, Path key, Path ca) {
    /** The files {@code ferry certs init DIR} writes for {@code party} (agent, controller or operator). */
    public static TlsFiles in(Path dir, String party) {
        return new TlsFiles(dir.resolve(party + ".crt"), dir.resolve(party + ".key"), dir.resolve(CertificateAuthority.CA_FILE));
    }

    /** Fails with a one-line reason when a file is missing or unreadable. */
    public TlsFiles requireReadable() {
        for (Path p : new Path[] {cert, key, ca}) {
            if (!Files.isReadable(p)) {
                throw new IllegalArgumentException("cannot read " + p);
            }
        }
        return this;
    }
}
