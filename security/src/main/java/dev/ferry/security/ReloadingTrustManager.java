package dev.ferry.security;

import java.io.IOException;
import java.net.Socket;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.CertificateException;
import java.security.cert.X509Certificate;
import java.util.List;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedTrustManager;

/**
 * Trusts the CA bundle in a PEM file, re-read when it changes (checked at every handshake), with the
 * JDK's PKIX validation and, where the TLS layer asks for it, its hostname check. When dialling, it
 * also requires the server's certificate to name a peer of {@code serverRole}: a source migrates only
 * to a Ferry agent, whatever else the CA has signed.
 */
final class ReloadingTrustManager extends X509ExtendedTrustManager {
    private static final System.Logger LOG = System.getLogger(ReloadingTrustManager.class.getName());

    private final Path caFile;
    private final WatchedFiles watched;
    private final Role serverRole; // null on the server side: there the role interceptor judges clients
    private volatile X509ExtendedTrustManager delegate;

    ReloadingTrustManager(Path caFile, Role serverRole) throws IOException {
        this.caFile = caFile;
        this.serverRole = serverRole;
        this.watched = new WatchedFiles(caFile);
        watched.changed();
        this.delegate = load();
    }

    private X509ExtendedTrustManager load() throws IOException {
        List<X509Certificate> cas = Pem.certificates(caFile);
        try {
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(null, null);
            for (int i = 0; i < cas.size(); i++) {
                ks.setCertificateEntry("ca-" + i, cas.get(i));
            }
            TrustManagerFactory f = TrustManagerFactory.getInstance("PKIX");
            f.init(ks);
            for (TrustManager t : f.getTrustManagers()) {
                if (t instanceof X509ExtendedTrustManager x) {
                    return x;
                }
            }
            throw new IOException("no X.509 trust manager for " + caFile);
        } catch (GeneralSecurityException e) {
            throw new IOException(caFile + ": " + e.getMessage(), e);
        }
    }

    private X509ExtendedTrustManager current() {
        if (watched.changed()) {
            try {
                delegate = load();
                LOG.log(System.Logger.Level.INFO, "reloaded {0}", caFile);
            } catch (IOException | RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "keeping the previous CA bundle: cannot reload {0}: {1}", caFile,
                        e.getMessage());
            }
        }
        return delegate;
    }

    private void requireRole(X509Certificate[] chain) throws CertificateException {
        if (serverRole == null) {
            return;
        }
        PeerIdentity id = PeerIdentity.of(chain[0]).orElseThrow(() -> new CertificateException(
                "the peer's certificate names no Ferry identity (spiffe://ferry.dev/" + serverRole.segment() + "/NAME)"));
        if (id.role() != serverRole) {
            throw new CertificateException("the peer is " + id + ", not a Ferry " + serverRole.segment());
        }
    }

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType) throws CertificateException {
        current().checkClientTrusted(chain, authType);
    }

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
        current().checkClientTrusted(chain, authType, socket);
    }

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
        current().checkClientTrusted(chain, authType, engine);
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType) throws CertificateException {
        current().checkServerTrusted(chain, authType);
        requireRole(chain);
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
        current().checkServerTrusted(chain, authType, socket);
        requireRole(chain);
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
        current().checkServerTrusted(chain, authType, engine);
        requireRole(chain);
    }

    @Override
    public X509Certificate[] getAcceptedIssuers() {
        return current().getAcceptedIssuers();
    }
}
