package dev.ferry.security;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.cert.X509Certificate;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CertificateAuthorityTest {
    @Test
    void initWritesTheFilesScriptsRelyOn(@TempDir Path dir) throws Exception {
        CertificateAuthority.init(dir, List.of("node-1.example"), List.of("10.0.0.7"));
        for (String f : List.of("ca.crt", "agent.crt", "agent.key", "controller.crt", "controller.key", "operator.crt",
                "operator.key")) {
            assertTrue(Files.isRegularFile(dir.resolve(f)), f);
        }
        for (String k : List.of("ca.key", "agent.key", "controller.key", "operator.key")) {
            assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(dir.resolve(k))), k);
        }
        X509Certificate ca = Pem.certificates(dir.resolve("ca.crt")).get(0);
        for (Role r : CertificateAuthority.PARTIES) {
            X509Certificate c = Pem.certificates(dir.resolve(r.segment() + ".crt")).get(0);
            c.verify(ca.getPublicKey());
            assertEquals(Optional.of(new PeerIdentity(r, r.segment())), PeerIdentity.of(c));
            Set<String> sans = new HashSet<>();
            c.getSubjectAlternativeNames().forEach(s -> sans.add(s.get(0) + ":" + s.get(1)));
            assertTrue(sans.containsAll(Set.of("2:localhost", "7:127.0.0.1", "2:node-1.example", "7:10.0.0.7")),
                    sans.toString());
            // The key on disk is the certificate's key.
            var key = Pem.privateKey(dir.resolve(r.segment() + ".key"));
            var sig = java.security.Signature.getInstance("SHA256withECDSA");
            sig.initSign(key);
            sig.update(new byte[] {1});
            byte[] s = sig.sign();
            sig.initVerify(c.getPublicKey());
            sig.update(new byte[] {1});
            assertTrue(sig.verify(s));
        }
    }
}
