package dev.ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The transport flags: no certificates and no --insecure is one line and exit 2; certs init writes what scripts use. */
class TlsFlagsTest {
    @Test
    void anAgentWithoutCertificatesOrInsecureRefusesToStart() {
        Cli.Result r = Cli.run("agent", "--control", "127.0.0.1:0", "--data", "127.0.0.1:0", "--no-warmup");
        assertEquals(2, r.exit(), r.out() + r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().startsWith("ferry: mutual TLS needs --tls-cert, --tls-key and --tls-ca"), r.err());
    }

    @Test
    void insecureAndCertificatesExcludeEachOther(@TempDir Path dir) {
        Cli.Result r = Cli.run("migration", "get", "x", "--agent", "127.0.0.1:1", "--insecure", "--tls-cert",
                dir.resolve("a.crt").toString());
        assertEquals(2, r.exit());
        assertTrue(r.err().startsWith("ferry: --insecure and --tls-cert"), r.err());
    }

    @Test
    void unreadableCertificateFilesAreOneLine(@TempDir Path dir) {
        Cli.Result r = Cli.run("migration", "get", "x", "--agent", "127.0.0.1:1", "--tls-cert", dir.resolve("no.crt").toString(),
                "--tls-key", dir.resolve("no.key").toString(), "--tls-ca", dir.resolve("ca.crt").toString());
        assertEquals(2, r.exit());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().contains("cannot read"), r.err());
    }

    @Test
    void certsInitWritesTheNamedFiles(@TempDir Path dir) throws Exception {
        Cli.Result r = Cli.run("certs", "init", dir.toString());
        assertEquals(0, r.exit(), r.err());
        for (String f : List.of("ca.crt", "agent.crt", "agent.key", "controller.crt", "controller.key", "operator.crt",
                "operator.key")) {
            assertTrue(Files.size(dir.resolve(f)) > 0, f);
        }
        assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(dir.resolve("agent.key"))));
    }
}
