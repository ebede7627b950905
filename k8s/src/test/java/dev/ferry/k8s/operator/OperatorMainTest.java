package dev.ferry.k8s.operator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import picocli.CommandLine;

class OperatorMainTest {
    @Test
    void withoutCertificatesOrInsecureItRefusesToStart() {
        // Refused before any Kubernetes client is made: no cluster is needed for this.
        assertEquals(2, new CommandLine(new OperatorMain()).execute("--agent-port", "7001"));
    }

    @Test
    void limitsDefaultToKubeVirtsAndLeaderElectionIsOn() {
        OperatorMain m = new OperatorMain();
        new CommandLine(m).parseArgs();
        assertEquals(Admission.DEFAULT_PER_NODE, m.maxPerNode);
        assertEquals(Admission.DEFAULT_PER_CLUSTER, m.maxPerCluster);
        assertTrue(m.leaderElect());
        assertEquals(null, m.metrics, "no metrics listener unless asked");
        new CommandLine(m).parseArgs("--no-leader-elect", "--max-migrations-per-node", "1", "--max-migrations", "3");
        assertFalse(m.leaderElect());
        assertEquals(1, m.maxPerNode);
        assertEquals(3, m.maxPerCluster);
    }

    @Test
    @org.junit.jupiter.api.Timeout(value = 20, threadMode = org.junit.jupiter.api.Timeout.ThreadMode.SEPARATE_THREAD)
    void limitsBelowOneAreRefusedBeforeAnythingStarts() { // without the check it would run (and never return)
        // --insecure would otherwise get as far as a Kubernetes client; the limit check comes first.
        assertEquals(2, new CommandLine(new OperatorMain()).execute("--insecure", "--max-migrations", "0"));
    }
}
