package dev.ferry.security;

import java.io.IOException;
import java.io.Writer;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509ExtensionUtils;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.openssl.jcajce.JcaPEMWriter;
import org.bouncycastle.openssl.jcajce.JcaPKCS8Generator;
import org.bouncycastle.operator.OperatorCreationException;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

/**
 * A small certificate authority for trying Ferry out ({@code ferry certs init}) and for tests: ECDSA
 * P-256 keys, a self-signed CA, and leaf certificates that carry a Ferry SPIFFE ID plus the DNS names
 * and IP addresses peers dial. Production clusters would use their own CA (cert-manager, SPIRE).
 */
public final class CertificateAuthority {
    public static final String CA_FILE = "ca.crt";
    public static final String CA_KEY_FILE = "ca.key";
    /** The parties {@code init} writes a certificate for, each named after its role. */
    public static final List<Role> PARTIES = List.of(Role.AGENT, Role.CONTROLLER, Role.OPERATOR);
    private static final Duration VALIDITY = Duration.ofDays(365);
    private static final SecureRandom RANDOM = new SecureRandom();

    private final X509Certificate cert;
    private final PrivateKey key;

    private CertificateAuthority(X509Certificate cert, PrivateKey key) {
        this.cert = cert;
        this.key = key;
    }

    /** A certificate and its private key. */
    public record Issued(X509Certificate cert, PrivateKey key) {
        /** Writes both as PEM; the key file is readable by its owner only. Replaces atomically, as a rotation would. */
        public void write(Path certFile, Path keyFile) throws IOException {
            writeAtomically(keyFile, pem(new JcaPKCS8Generator(key, null).generate()), true);
            writeAtomically(certFile, pem(cert), false);
        }
    }

    /** A new CA named {@code commonName}. */
    public static CertificateAuthority create(String commonName) {
        KeyPair kp = newKeyPair();
        X500Name name = new X500Name("CN=" + commonName);
        try {
            JcaX509ExtensionUtils ext = new JcaX509ExtensionUtils();
            X509v3CertificateBuilder b = builder(name, name, kp);
            b.addExtension(Extension.basicConstraints, true, new BasicConstraints(0));
            b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign));
            b.addExtension(Extension.subjectKeyIdentifier, false, ext.createSubjectKeyIdentifier(kp.getPublic()));
            return new CertificateAuthority(sign(b, kp.getPrivate()), kp.getPrivate());
        } catch (IOException | GeneralSecurityException e) {
            throw new IllegalStateException("cannot create a CA: " + e.getMessage(), e);
        }
    }

    /** The CA that {@code init} wrote into {@code dir} (its ca.crt and ca.key), to issue more certificates. */
    public static CertificateAuthority load(Path dir) throws IOException {
        return new CertificateAuthority(Pem.certificates(dir.resolve(CA_FILE)).get(0), Pem.privateKey(dir.resolve(CA_KEY_FILE)));
    }

    public X509Certificate certificate() {
        return cert;
    }

    /** Writes the CA's certificate as PEM (what every party trusts). */
    public void writeCertificate(Path file) throws IOException {
        writeAtomically(file, pem(cert), false);
    }

    /**
     * A leaf certificate for {@code identity}, usable by a server and a client, valid for the given
     * DNS names and IP addresses.
     */
    public Issued issue(PeerIdentity identity, List<String> dnsNames, List<String> ipAddresses) {
        KeyPair kp = newKeyPair();
        List<GeneralName> sans = new ArrayList<>();
        sans.add(new GeneralName(GeneralName.uniformResourceIdentifier, identity.uri()));
        dnsNames.forEach(d -> sans.add(new GeneralName(GeneralName.dNSName, d)));
        for (String ip : ipAddresses) {
            if (!ip.matches("[0-9.]+|[0-9a-fA-F:]+")) {
                throw new IllegalArgumentException("not an IP address: " + ip);
            }
            sans.add(new GeneralName(GeneralName.iPAddress, ip));
        }
        try {
            JcaX509ExtensionUtils ext = new JcaX509ExtensionUtils();
            X509v3CertificateBuilder b = builder(new X500Name(cert.getSubjectX500Principal().getName()),
                    new X500Name("CN=" + identity.name() + ",OU=" + identity.role().segment()), kp);
            b.addExtension(Extension.basicConstraints, true, new BasicConstraints(false));
            b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.digitalSignature));
            b.addExtension(Extension.extendedKeyUsage, false,
                    new ExtendedKeyUsage(new KeyPurposeId[] {KeyPurposeId.id_kp_serverAuth, KeyPurposeId.id_kp_clientAuth}));
            b.addExtension(Extension.subjectAlternativeName, false, new GeneralNames(sans.toArray(GeneralName[]::new)));
            b.addExtension(Extension.authorityKeyIdentifier, false, ext.createAuthorityKeyIdentifier(cert));
            b.addExtension(Extension.subjectKeyIdentifier, false, ext.createSubjectKeyIdentifier(kp.getPublic()));
            return new Issued(sign(b, key), kp.getPrivate());
        } catch (IOException | GeneralSecurityException e) {
            throw new IllegalStateException("cannot issue a certificate: " + e.getMessage(), e);
        }
    }

    /**
     * Writes a new CA and a certificate for each of {@link #PARTIES} into {@code dir}: {@code ca.crt},
     * {@code ca.key}, and {@code ROLE.crt}/{@code ROLE.key}, each leaf valid for localhost, 127.0.0.1 and
     * the extra names given. Keys are mode 0600.
     */
    public static void init(Path dir, List<String> extraDns, List<String> extraIps) throws IOException {
        Files.createDirectories(dir);
        CertificateAuthority ca = create("Ferry trial CA " + Instant.now());
        List<String> dns = new ArrayList<>(List.of("localhost"));
        dns.addAll(extraDns);
        List<String> ips = new ArrayList<>(List.of("127.0.0.1"));
        ips.addAll(extraIps);
        new Issued(ca.cert, ca.key).write(dir.resolve(CA_FILE), dir.resolve(CA_KEY_FILE));
        for (Role r : PARTIES) {
            ca.issue(new PeerIdentity(r, r.segment()), dns, ips)
                    .write(dir.resolve(r.segment() + ".crt"), dir.resolve(r.segment() + ".key"));
        }
    }

    private static X509v3CertificateBuilder builder(X500Name issuer, X500Name subject, KeyPair kp) {
        Instant now = Instant.now();
        return new JcaX509v3CertificateBuilder(issuer, new BigInteger(127, RANDOM).add(BigInteger.ONE),
                Date.from(now.minus(Duration.ofMinutes(5))), Date.from(now.plus(VALIDITY)), subject, kp.getPublic());
    }

    private static X509Certificate sign(X509v3CertificateBuilder b, PrivateKey signer) throws GeneralSecurityException {
        try {
            return new JcaX509CertificateConverter().getCertificate(
                    b.build(new JcaContentSignerBuilder("SHA256withECDSA").build(signer)));
        } catch (OperatorCreationException e) {
            throw new GeneralSecurityException(e);
        }
    }

    private static KeyPair newKeyPair() {
        try {
            KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
            g.initialize(new ECGenParameterSpec("secp256r1"), RANDOM);
            return g.generateKeyPair();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("no EC P-256 key generator: " + e.getMessage(), e);
        }
    }

    private static String pem(Object o) throws IOException {
        java.io.StringWriter s = new java.io.StringWriter();
        try (JcaPEMWriter w = new JcaPEMWriter(s)) {
            w.writeObject(o);
        }
        return s.toString();
    }

    /** Writes a sibling temporary file (0600 first, if secret) and renames it over {@code file}. */
    private static void writeAtomically(Path file, String content, boolean secret) throws IOException {
        Path dir = file.toAbsolutePath().getParent();
        Path tmp = Files.createTempFile(dir, "." + file.getFileName(), ".tmp",
                PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString(secret ? "rw-------" : "rw-r--r--")));
        try {
            try (Writer w = Files.newBufferedWriter(tmp, StandardCharsets.US_ASCII, StandardOpenOption.TRUNCATE_EXISTING)) {
                w.write(content);
            }
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }
}
