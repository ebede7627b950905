package dev.ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The agent's limit flags: bad values are one clear line, before anything listens. */
class AgentLimitsCliTest {
    @Test
    void maxVmsBelowOneIsRefused() {
        Cli.Result r = Cli.run("agent", "--control", "127.0.0.1:0", "--data", "127.0.0.1:0", "--max-vms", "0", "--insecure");
        assertEquals(2, r.exit(), r.err());
        assertTrue(r.err().contains("--max-vms must be at least 1"), r.err());
        assertFalse(r.err().contains("\tat "), "no stack trace: " + r.err());
    }

    @Test
    void maxGuestMemoryMustBeASize() {
        Cli.Result r = Cli.run("agent", "--control", "127.0.0.1:0", "--data", "127.0.0.1:0", "--max-guest-memory", "lots");
        assertTrue(r.exit() != 0, r.err());
        assertTrue(r.err().contains("not a size"), r.err());
        assertFalse(r.err().contains("\tat "), "no stack trace: " + r.err());
    }

    @Test
    void helpListsTheLimits() {
        Cli.Result r = Cli.run("agent", "--help");
        assertEquals(0, r.exit());
        assertTrue(r.out().contains("--max-vms") && r.out().contains("--max-guest-memory"), r.out());
        assertTrue(r.out().contains("--max-outgoing-migrations") && r.out().contains("--max-incoming-migrations")
                && r.out().contains("--when-busy"), r.out());
    }

    @Test
    void migrationLimitsOutOfRangeAndUnknownPoliciesAreRefused() {
        Cli.Result r = Cli.run("agent", "--control", "127.0.0.1:0", "--data", "127.0.0.1:0", "--insecure",
                "--max-outgoing-migrations", "0");
        assertEquals(2, r.exit(), r.err());
        assertTrue(r.err().contains("migration limits must be 1 to"), r.err());
        r = Cli.run("agent", "--control", "127.0.0.1:0", "--data", "127.0.0.1:0", "--insecure", "--when-busy", "wait");
        assertEquals(2, r.exit(), r.err());
        assertTrue(r.err().contains("--when-busy must be queue or refuse"), r.err());
        assertFalse(r.err().contains("\tat "), "no stack trace: " + r.err());
    }
}
