package dev.ferry.security;

import java.net.URI;
import java.security.cert.Certificate;
import java.security.cert.CertificateParsingException;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Optional;
import java.util.regex.Pattern;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;

/**
 * Who a peer is: the one {@code spiffe://ferry.dev/ROLE/NAME} URI among the subject alternative names
 * of its (already verified) certificate. A certificate with none, or with two, names nobody: two
 * would let one key act in two roles.
 */
public record PeerIdentity(Role role, String name) {
    public static final String TRUST_DOMAIN = "ferry.dev";
    private static final String PREFIX = "spiffe://" + TRUST_DOMAIN + "/";
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9._-]{1,128}");
    private static final int SAN_URI = 6; // GeneralName uniformResourceIdentifier, RFC 5280

    public PeerIdentity {
        if (!NAME.matcher(name).matches()) {
            throw new IllegalArgumentException("identity name must match " + NAME.pattern() + ", not '" + name + "'");
        }
    }

    /** The SPIFFE ID this identity is written as in a certificate. */
    public String uri() {
        return PREFIX + role.segment() + "/" + name;
    }

    /** Parses a Ferry SPIFFE ID; empty for anything else (another trust domain, an unknown role, extra path). */
    public static Optional<PeerIdentity> parse(String uri) {
        if (uri == null || !uri.startsWith(PREFIX)) {
            return Optional.empty();
        }
        try {
            URI u = URI.create(uri);
            if (u.getQuery() != null || u.getFragment() != null || u.getUserInfo() != null || u.getPort() != -1) {
                return Optional.empty();
            }
        } catch (IllegalArgumentException e) {
            return Optional.empty();
        }
        String[] parts = uri.substring(PREFIX.length()).split("/", -1);
        if (parts.length != 2 || !NAME.matcher(parts[1]).matches()) {
            return Optional.empty();
        }
        return Role.ofSegment(parts[0]).map(r -> new PeerIdentity(r, parts[1]));
    }

    /** The identity a certificate names, if exactly one Ferry SPIFFE ID is among its SAN URIs. */
    public static Optional<PeerIdentity> of(X509Certificate cert) {
        Collection<List<?>> sans;
        try {
            sans = cert.getSubjectAlternativeNames();
        } catch (CertificateParsingException e) {
            return Optional.empty();
        }
        if (sans == null) {
            return Optional.empty();
        }
        List<PeerIdentity> found = new ArrayList<>();
        for (List<?> san : sans) {
            if (san.size() >= 2 && Integer.valueOf(SAN_URI).equals(san.get(0)) && san.get(1) instanceof String s
                    && s.startsWith("spiffe://")) {
                Optional<PeerIdentity> id = parse(s);
                if (id.isEmpty()) {
                    return Optional.empty(); // a SPIFFE ID we do not understand: trust none of it
                }
                found.add(id.get());
            }
        }
        return found.size() == 1 ? Optional.of(found.get(0)) : Optional.empty();
    }

    /** Where a session keeps the identity found for it (a session's peer certificate never changes). */
    private static final String SESSION_KEY = "dev.ferry.security.PeerIdentity";

    /**
     * The identity of the peer of a TLS session whose handshake verified its certificate chain. Found once per
     * session and kept in it: copying the chain and parsing its SANs cost 70-106 µs on every call, switchover
     * calls included.
     */
    @SuppressWarnings("unchecked")
    public static Optional<PeerIdentity> of(SSLSession session) {
        if (session == null) {
            return Optional.empty();
        }
        if (session.getValue(SESSION_KEY) instanceof Optional<?> known) {
            return (Optional<PeerIdentity>) known;
        }
        Optional<PeerIdentity> found;
        try {
            Certificate[] chain = session.getPeerCertificates();
            found = chain.length > 0 && chain[0] instanceof X509Certificate x ? of(x) : Optional.empty();
        } catch (SSLPeerUnverifiedException e) {
            return Optional.empty(); // not kept: nothing verified yet
        }
        session.putValue(SESSION_KEY, found);
        return found;
    }

    @Override
    public String toString() {
        return uri();
    }
}
