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
}
