package dev.ferry.security;

import java.io.IOException;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/**
 * The transport flags of every Ferry command that listens or dials an agent (a picocli mixin):
 * mutual TLS from --tls-cert, --tls-key and --tls-ca, or plaintext only with an explicit --insecure.
 */
public final class TlsOptions {
    private static final System.Logger LOG = System.getLogger(TlsOptions.class.getName());

    @Option(names = "--tls-cert", paramLabel = "FILE", description = "This party's certificate chain, PEM (re-read when it changes).")
    Path cert;

    @Option(names = "--tls-key", paramLabel = "FILE", description = "Its private key, PEM (re-read when it changes).")
    Path key;

    @Option(names = "--tls-ca", paramLabel = "FILE", description = "CA bundle to trust for peers, PEM (re-read when it changes).")
    Path ca;

    @Option(names = "--insecure", description = "Plaintext without authentication: anyone who reaches the ports can do anything. Trusted hosts only.")
    boolean insecure;

    /**
     * The transport these flags ask for. Bad combinations and unreadable files fail with
     * IllegalArgumentException or IOException carrying one line for the user.
     */
    public TransportSecurity open() throws IOException {
        boolean any = cert != null || key != null || ca != null;
        if (insecure) {
            if (any) {
                throw new IllegalArgumentException("--insecure and --tls-cert/--tls-key/--tls-ca exclude each other");
            }
            LOG.log(System.Logger.Level.WARNING, "--insecure: plaintext gRPC without authentication; anyone who reaches "
                    + "these ports can create, migrate and delete VMs");
            return TransportSecurity.insecure();
        }
        if (cert == null || key == null || ca == null) {
            throw new IllegalArgumentException("mutual TLS needs --tls-cert, --tls-key and --tls-ca (trial ones: "
                    + "`ferry certs init DIR`), or --insecure for plaintext");
        }
        return TransportSecurity.mutualTls(new TlsFiles(cert, key, ca));
    }

    /** The flags that select {@code files}, for starting another Ferry process. */
    public static java.util.List<String> flags(TlsFiles files) {
        return java.util.List.of("--tls-cert", files.cert().toString(), "--tls-key", files.key().toString(), "--tls-ca",
                files.ca().toString());
    }
}
