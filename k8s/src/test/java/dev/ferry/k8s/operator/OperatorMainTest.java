package dev.ferry.k8s.operator;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;
import picocli.CommandLine;

class OperatorMainTest {
    @Test
    void withoutCertificatesOrInsecureItRefusesToStart() {
        // Refused before any Kubernetes client is made: no cluster is needed for this.
        assertEquals(2, new CommandLine(new OperatorMain()).execute("--agent-port", "7001"));
    }
}
