package dev.ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ferry.backends.BackendTestSupport;
import dev.ferry.vm.Backend;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** The debugging tools around snapshots, driven through the real CLI. */
class SnapshotCliTest {
    @TempDir
    Path tmp;

    @ParameterizedTest(name = "on {0}")
    @EnumSource(Backend.class)
    void runSnapshotRestoreDumpAndDiff(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        Path a = tmp.resolve("a");
        Path b = tmp.resolve("b");
        Cli.Result run = Cli.run("vm", "run", "--backend", backend.cliName(), "--memory", "64m", "--working-set", "16m",
                "--dirty-rate", "20m", "--seconds", "0.5", "--vcpus", "2", "--snapshot", a.toString(), "--json");
        assertEquals(0, run.exit(), run.out());
        JsonNode r = run.lastJson();
        for (String k : new String[] {"backend", "guest_counter", "vcpu_exits", "dirty_pages_per_second", "memory_bytes",
                "elapsed_ms", "wrong_pages"}) {
            assertTrue(r.has(k), "vm run JSON has " + k + ": " + r);
        }
        assertEquals(backend.cliName(), r.get("backend").asText());
        assertEquals(0, r.get("wrong_pages").asLong());
        assertEquals(64L << 20, r.get("memory_bytes").asLong());
        assertTrue(r.get("dirty_pages_per_second").asLong() > 0, "paced guest dirties pages: " + r);

        Cli.Result restored = Cli.run("vm", "restore", a.toString(), "--seconds", "0.5", "--json");
        assertEquals(0, restored.exit(), restored.out());
        JsonNode rr = restored.lastJson();
        assertEquals(0, rr.get("wrong_pages").asLong());
        assertTrue(rr.get("guest_counter").asLong() > rr.get("guest_counter_at_restore").asLong());
        assertTrue(rr.get("guest_counter_at_restore").asLong() >= r.get("guest_counter").asLong(),
                "restore starts from the snapshot's counter");

        assertEquals(backend.cliName(), rr.get("backend").asText(), "a snapshot restores on the backend that saved it");
        Backend other = backend == Backend.KVM ? Backend.PROCESS : Backend.KVM;
        Cli.Result wrong = Cli.run("vm", "restore", a.toString(), "--backend", other.cliName());
        assertEquals(2, wrong.exit(), wrong.out());
        assertTrue(wrong.err().startsWith("ferry: the snapshot in ") && wrong.err().contains("restores only there"),
                wrong.err());

        // On demand: resumes at once, pages come from the snapshot file on first touch (userfaultfd).
        Cli.Result lazy = Cli.run("vm", "restore", a.toString(), "--on-demand", "--seconds", "0.5", "--json");
        assertEquals(0, lazy.exit(), lazy.out());
        JsonNode lz = lazy.lastJson();
        assertEquals(0, lz.get("wrong_pages").asLong(), "every page faulted in from the file is right");
        assertTrue(lz.get("postcopy_faults").asLong() >= (16 << 20) / 4096, "the self-check faulted the working set in");
        assertTrue(lz.get("guest_counter").asLong() > rr.get("guest_counter_at_restore").asLong());

        Cli.Result dump = Cli.run("state", "dump", a.toString());
        assertEquals(0, dump.exit(), dump.out());
        JsonNode doc = Output.JSON.readTree(dump.out());
        Set<String> names = new HashSet<>();
        doc.findValues("name").forEach(n -> names.add(n.asText()));
        Set<String> sections = backend == Backend.KVM
                ? Set.of("vm.config", "kvm.vm", "kvm.vcpu", "device.serial", "device.workload")
                : Set.of("vm.config", "process.vcpu", "device.serial", "device.workload");
        assertTrue(names.containsAll(sections), "dump names every section: " + names);

        assertEquals(0, Cli.run("vm", "run", "--backend", backend.cliName(), "--memory", "64m", "--working-set", "16m",
                "--dirty-rate", "20m", "--seconds", "0.3", "--vcpus", "2", "--snapshot", b.toString()).exit());
        Cli.Result same = Cli.run("state", "diff", a.toString(), a.toString());
        assertEquals(0, same.exit(), same.out());
        Cli.Result diff = Cli.run("state", "diff", a.toString(), b.toString());
        assertEquals(1, diff.exit(), diff.out());
        assertTrue(diff.out().contains(backend == Backend.KVM ? "kvm.vcpu/0" : "process.vcpu/0"), diff.out());
    }

    @Test
    void badInputGetsAClearError() {
        Cli.Result r = Cli.run("vm", "run", "--memory", "64m", "--working-set", "1g", "--seconds", "0.1");
        assertEquals(2, r.exit());
        assertTrue(r.err().startsWith("ferry: ") && r.err().contains("does not fit"), r.err());
        Cli.Result b = Cli.run("vm", "run", "--backend", "qemu");
        assertEquals(2, b.exit());
        assertTrue(b.err().contains("unknown backend 'qemu'"), b.err());
    }
}
