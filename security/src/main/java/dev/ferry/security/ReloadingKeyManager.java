package dev.ferry.security;

import java.io.IOException;
import java.net.Socket;
import java.nio.file.Path;
import java.security.Principal;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.X509ExtendedKeyManager;

/**
 * This party's certificate chain and private key from PEM files, re-read when they change (checked at
 * every handshake): a rotated certificate is presented on the next new connection, without a
 * restart. A half-written or broken pair keeps the previous one in use, with a warning.
 */
final class ReloadingKeyManager extends X509ExtendedKeyManager {
    private static final System.Logger LOG = System.getLogger(ReloadingKeyManager.class.getName());

    private record Material(X509Certificate[] chain, PrivateKey key) {}

    private final Path certFile;
    private final Path keyFile;
    private final WatchedFiles watched;
    // Each loaded pair has its own alias, so a handshake that chose one never gets another's chain or key.
    private final ConcurrentMap<String, Material> byAlias = new ConcurrentHashMap<>();
    private volatile String current;
    private int generation; // guarded by this

    ReloadingKeyManager(Path certFile, Path keyFile) throws IOException {
        this.certFile = certFile;
        this.keyFile = keyFile;
        this.watched = new WatchedFiles(certFile, keyFile);
        watched.changed();
        install(load());
    }

    private Material load() throws IOException {
        List<X509Certificate> chain = Pem.certificates(certFile);
        PrivateKey key = Pem.privateKey(keyFile);
        if (!chain.get(0).getPublicKey().getAlgorithm().equals(key.getAlgorithm())) {
            throw new IOException(keyFile + " is a " + key.getAlgorithm() + " key but " + certFile + " holds a "
                    + chain.get(0).getPublicKey().getAlgorithm() + " certificate");
        }
        requirePair(chain.get(0), key);
        return new Material(chain.toArray(X509Certificate[]::new), key);
    }

    /** A rotation caught between writing the key and the certificate must not pair the new key with the old certificate. */
    private void requirePair(X509Certificate cert, PrivateKey key) throws IOException {
        try {
            String alg = key.getAlgorithm().equals("EC") ? "SHA256withECDSA" : "SHA256with" + key.getAlgorithm();
            java.security.Signature s = java.security.Signature.getInstance(alg);
            s.initSign(key);
            byte[] probe = {'f', 'e', 'r', 'r', 'y'};
            s.update(probe);
            byte[] sig = s.sign();
            s.initVerify(cert.getPublicKey());
            s.update(probe);
            if (!s.verify(sig)) {
                throw new IOException(keyFile + " is not the key of " + certFile);
            }
        } catch (java.security.GeneralSecurityException e) {
            throw new IOException("cannot check " + keyFile + " against " + certFile + ": " + e.getMessage(), e);
        }
    }

    private synchronized void install(Material m) {
        String alias = "ferry-" + (++generation);
        byAlias.put(alias, m);
        String old = current;
        current = alias;
        if (old != null) { // keep one previous pair for handshakes that chose it a moment ago
            byAlias.keySet().removeIf(a -> !a.equals(alias) && !a.equals(old));
        }
    }

    private String currentAlias(String keyType) {
        if (watched.changed()) {
            try {
                install(load());
                LOG.log(System.Logger.Level.INFO, "reloaded {0}", certFile);
            } catch (IOException | RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "keeping the previous certificate: cannot reload {0}: {1}",
                        certFile, e.getMessage());
            }
        }
        String alias = current;
        Material m = byAlias.get(alias);
        return keyType == null || m == null || keyType.split("_")[0].equals(m.key().getAlgorithm()) ? alias : null;
    }

    private String anyOf(String[] keyTypes) {
        if (keyTypes == null) {
            return currentAlias(null);
        }
        for (String t : keyTypes) {
            String a = currentAlias(t);
            if (a != null) {
                return a;
            }
        }
        return null;
    }

    @Override
    public String[] getClientAliases(String keyType, Principal[] issuers) {
        String a = currentAlias(keyType);
        return a == null ? null : new String[] {a};
    }

    @Override
    public String chooseClientAlias(String[] keyTypes, Principal[] issuers, Socket socket) {
        return anyOf(keyTypes);
    }

    @Override
    public String chooseEngineClientAlias(String[] keyTypes, Principal[] issuers, SSLEngine engine) {
        return anyOf(keyTypes);
    }

    @Override
    public String[] getServerAliases(String keyType, Principal[] issuers) {
        return getClientAliases(keyType, issuers);
    }

    @Override
    public String chooseServerAlias(String keyType, Principal[] issuers, Socket socket) {
        return currentAlias(keyType);
    }

    @Override
    public String chooseEngineServerAlias(String keyType, Principal[] issuers, SSLEngine engine) {
        return currentAlias(keyType);
    }

    @Override
    public X509Certificate[] getCertificateChain(String alias) {
        Material m = byAlias.get(alias);
        return m == null ? null : m.chain().clone();
    }

    @Override
    public PrivateKey getPrivateKey(String alias) {
        Material m = byAlias.get(alias);
        return m == null ? null : m.key();
    }
}
