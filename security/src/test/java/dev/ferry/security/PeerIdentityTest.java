package dev.ferry.security;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class PeerIdentityTest {
    @Test
    void eachRoleMapsFromItsSpiffeId() {
        assertEquals(Optional.of(new PeerIdentity(Role.AGENT, "node-1")), PeerIdentity.parse("spiffe://ferry.dev/agent/node-1"));
        assertEquals(Optional.of(new PeerIdentity(Role.CONTROLLER, "cloud")),
                PeerIdentity.parse("spiffe://ferry.dev/controller/cloud"));
        assertEquals(Optional.of(new PeerIdentity(Role.OPERATOR, "op")), PeerIdentity.parse("spiffe://ferry.dev/operator/op"));
        assertEquals("spiffe://ferry.dev/agent/node-1", new PeerIdentity(Role.AGENT, "node-1").uri());
    }

    @Test
    void anythingElseNamesNobody() {
        for (String s : List.of("spiffe://other.dev/agent/a", "spiffe://ferry.dev/admin/a", "spiffe://ferry.dev/agent/",
                "spiffe://ferry.dev/agent/a/b", "spiffe://ferry.dev/agent", "https://ferry.dev/agent/a",
                "spiffe://ferry.dev/AGENT/a", "spiffe://ferry.dev/agent/a?x=1", "spiffe://ferry.dev:443/agent/a", "")) {
            assertTrue(PeerIdentity.parse(s).isEmpty(), s);
        }
        assertThrows(IllegalArgumentException.class, () -> new PeerIdentity(Role.AGENT, "a/b"));
    }

    @Test
    void aCertificateNamesItsOneIdentity() {
        CertificateAuthority ca = CertificateAuthority.create("test");
        var agent = ca.issue(new PeerIdentity(Role.AGENT, "a"), List.of("localhost"), List.of("127.0.0.1"));
        assertEquals(Optional.of(new PeerIdentity(Role.AGENT, "a")), PeerIdentity.of(agent.cert()));
    }

    @Test
    void aSessionIsIdentifiedOnceAndKeepsItsIdentity() {
        CertificateAuthority ca = CertificateAuthority.create("test");
        var agent = ca.issue(new PeerIdentity(Role.AGENT, "a"), List.of("localhost"), List.of("127.0.0.1"));
        java.util.Map<String, Object> values = new java.util.HashMap<>();
        int[] chainCopies = {0};
        javax.net.ssl.SSLSession session = (javax.net.ssl.SSLSession) java.lang.reflect.Proxy.newProxyInstance(
                getClass().getClassLoader(), new Class<?>[] {javax.net.ssl.SSLSession.class}, (proxy, m, args) -> switch (m.getName()) {
                    case "getPeerCertificates" -> {
                        chainCopies[0]++;
                        yield new java.security.cert.Certificate[] {agent.cert()};
                    }
                    case "getValue" -> values.get((String) args[0]);
                    case "putValue" -> values.put((String) args[0], args[1]);
                    default -> throw new UnsupportedOperationException(m.getName());
                });
        for (int i = 0; i < 3; i++) {
            assertEquals(Optional.of(new PeerIdentity(Role.AGENT, "a")), PeerIdentity.of(session));
        }
        assertEquals(1, chainCopies[0], "the chain is read once per session");
    }
}
