package dev.ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.kvm.sys.KvmSystem;
import dev.ferry.vm.Backend;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@code --backend} on a host without KVM (its device node made to point nowhere): {@code auto} runs the guest on
 * the process backend and says so; asking for KVM gets one line saying what is missing, never a stack trace.
 */
class BackendChoiceTest {
    @BeforeEach
    void noKvmHere() {
        System.setProperty(KvmSystem.DEVICE_PROPERTY, "/nonexistent/kvm");
    }

    @AfterEach
    void restore() {
        System.clearProperty(KvmSystem.DEVICE_PROPERTY);
    }

    @Test
    void autoFallsBackToTheProcessBackendAndSaysSo() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        Cli.Result r = Cli.run("vm", "run", "--memory", "64m", "--working-set", "8m", "--dirty-rate", "8m",
                "--seconds", "0.2", "--json");
        assertEquals(0, r.exit(), r.err());
        assertEquals("process", r.lastJson().get("backend").asText());
        assertEquals(0, r.lastJson().get("wrong_pages").asLong());
    }

    @Test
    void askingForKvmWhereThereIsNoneGetsOneClearLine() {
        for (String[] args : new String[][] {{"vm", "run", "--backend", "kvm"}, {"demo", "--backend", "kvm"},
                {"agent", "--backend", "kvm", "--control", "127.0.0.1:0", "--data", "127.0.0.1:0", "--insecure"}}) {
            Cli.Result r = Cli.run(args);
            assertEquals(2, r.exit(), String.join(" ", args) + ": " + r.out() + r.err());
            assertEquals("ferry: kvm backend: /nonexistent/kvm does not exist (no KVM on this host, or not passed into"
                    + " the container); use --backend process", r.err().strip(), String.join(" ", args));
            assertFalse(r.err().contains("\tat "), "no stack trace");
        }
    }

    @Test
    void anUnknownBackendIsRefusedByName() {
        Cli.Result r = Cli.run("vm", "run", "--backend", "qemu");
        assertEquals(2, r.exit());
        assertTrue(r.err().contains("unknown backend 'qemu' (auto, kvm or process)"), r.err());
    }
}
