package dev.ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.security.CertificateAuthority;
import dev.ferry.security.TlsFiles;
import dev.ferry.security.TlsOptions;
import dev.ferry.security.TransportSecurity;
import dev.ferry.vm.Backend;
import dev.ferry.vm.GoldenSnapshots;
import dev.ferry.vm.Snapshot;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.zip.GZIPInputStream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * {@code ferry vm create|list|get|pause|resume|check|snapshot|restore|delete --agent} against a real agent process,
 * over mutual TLS: the VM API from the command line, and snapshots that never leave the agent's snapshot directory
 * and keep the VM's labels.
 */
class RemoteVmCliTest {
    @TempDir
    static Path certs;

    @BeforeAll
    static void certificates() throws Exception {
        CertificateAuthority.init(certs, List.of(), List.of());
    }

    private static Cli.Result ferry(AgentProcess agent, String... args) {
        List<String> all = new ArrayList<>(List.of(args));
        all.addAll(List.of("--agent", agent.controlAddress()));
        all.addAll(TlsOptions.flags(TlsFiles.in(certs, "controller")));
        return Cli.run(all.toArray(String[]::new));
    }

    private static Cli.Result ok(Cli.Result r) {
        assertEquals(0, r.exit(), () -> "exit " + r.exit() + "\nout: " + r.out() + "\nerr: " + r.err());
        return r;
    }

    static final Map<String, String> WEB_LABELS = Map.of("app", "web", "example.com/tier", "front");

    /** Vm.labels as the CLI's JSON has them (left out when there are none). */
    private static Map<String, String> labels(JsonNode vm) {
        Map<String, String> m = new TreeMap<>();
        vm.path("labels").fields().forEachRemaining(e -> m.put(e.getKey(), e.getValue().asText()));
        return m;
    }

    /** native-kvm's golden snapshot of release 0.1.0 (from its test jar), written before snapshots kept labels. */
    private static void unpackGolden(Backend backend, Path to) throws Exception {
        String from = GoldenSnapshots.resourceDir("0.1.0", backend);
        Files.createDirectories(to);
        for (String f : List.of(Snapshot.STATE_FILE, Snapshot.MANIFEST_FILE)) {
            try (InputStream in = RemoteVmCliTest.class.getResourceAsStream(from + f)) {
                Files.copy(Objects.requireNonNull(in, from + f), to.resolve(f));
            }
        }
        try (InputStream in = new GZIPInputStream(Objects.requireNonNull(
                RemoteVmCliTest.class.getResourceAsStream(from + "memory.bin.gz"), from + "memory.bin.gz"))) {
            Files.copy(in, to.resolve(Snapshot.MEMORY_FILE));
        }
    }

    @ParameterizedTest(name = "on {0}")
    @EnumSource(Backend.class)
    void manageSnapshotAndRestoreAnAgentsVms(Backend backend, @TempDir Path work) throws Exception {
        BackendTestSupport.assume(backend);
        Path snapshots = work.resolve("snapshots");
        List<String> args = new ArrayList<>(List.of("--backend", backend.cliName(), "--no-warmup", "--snapshot-dir",
                snapshots.toString()));
        args.addAll(TlsOptions.flags(TlsFiles.in(certs, "agent")));
        try (AgentProcess agent = AgentProcess.start("vm-cli-" + backend.cliName(), work.resolve("agent.log"), List.of(),
                args, TransportSecurity.mutualTls(TlsFiles.in(certs, "controller")))) {
            JsonNode web = ok(ferry(agent, "vm", "create", "vms/web", "--memory", "64m", "--working-set", "16m",
                    "--dirty-rate", "4m", "--label", "app=web", "--label", "example.com/tier=front", "--json"))
                    .lastJson();
            assertEquals("vms/web", web.get("name").asText());
            assertEquals(WEB_LABELS, labels(web));
            assertEquals("RUNNING", web.get("state").asText());

            String table = ok(ferry(agent, "vm", "list")).out();
            assertTrue(table.startsWith("NAME"), table);
            assertTrue(table.contains("vms/web") && table.contains("RUNNING"), table);

            assertEquals("PAUSED", ok(ferry(agent, "vm", "pause", "web", "--json")).lastJson().get("state").asText());
            assertEquals("PAUSED", ok(ferry(agent, "vm", "get", "vms/web", "--json")).lastJson().get("state").asText());
            assertEquals("RUNNING", ok(ferry(agent, "vm", "resume", "web", "--json")).lastJson().get("state").asText());
            assertEquals(0, ok(ferry(agent, "vm", "check", "web", "--json")).lastJson().path("wrongPages").asLong());

            JsonNode snap = ok(ferry(agent, "vm", "snapshot", "web", "nightly/web-1", "--json")).lastJson();
            Path dir = snapshots.resolve("nightly/web-1");
            assertEquals(dir.toString(), snap.get("snapshotDirectory").asText());
            assertEquals("RUNNING", snap.get("vm").get("state").asText(), "a running VM runs again after its snapshot");
            assertTrue(Files.isRegularFile(dir.resolve("memory.bin")));
            assertEquals(WEB_LABELS, Snapshot.labelsOf(dir), "the manifest records the VM's labels");
            try (var left = Files.list(dir.getParent())) {
                assertEquals(List.of(dir), left.toList(), "no partial directory is left beside the snapshot");
            }

            Cli.Result again = ferry(agent, "vm", "snapshot", "web", "nightly/web-1");
            assertNotEquals(0, again.exit());
            assertTrue(again.err().contains("ALREADY_EXISTS"), again.err());
            Cli.Result escape = ferry(agent, "vm", "snapshot", "web", "/etc/ferry-escape");
            assertNotEquals(0, escape.exit());
            assertTrue(escape.err().contains("INVALID_ARGUMENT") && escape.err().contains("snapshot directory"),
                    escape.err());
            assertFalse(Files.exists(Path.of("/etc/ferry-escape")));

            JsonNode copy = ok(ferry(agent, "vm", "restore", "nightly/web-1", "--name", "web-copy", "--json")).lastJson();
            assertEquals("vms/web-copy", copy.get("name").asText());
            assertEquals("RUNNING", copy.get("state").asText());
            assertEquals(WEB_LABELS, labels(copy), "a restored VM has the snapshotted VM's labels");
            assertEquals(WEB_LABELS, labels(ok(ferry(agent, "vm", "get", "web-copy", "--json")).lastJson()));
            assertEquals(0, ok(ferry(agent, "vm", "check", "web-copy", "--json")).lastJson().path("wrongPages").asLong());

            JsonNode lazy = ok(ferry(agent, "vm", "restore", dir.toString(), "--name", "web-lazy", "--on-demand",
                    "--json")).lastJson();
            assertEquals("RUNNING", lazy.get("state").asText());
            assertEquals(WEB_LABELS, labels(lazy), "an on-demand restore has them too");
            assertEquals(0, ok(ferry(agent, "vm", "check", "web-lazy", "--json")).lastJson().path("wrongPages").asLong(),
                    "pages read from the snapshot as the guest touches them are right");

            // In this process (no --agent), the summary shows them.
            Cli.Result local = Cli.run("vm", "restore", dir.toString(), "--seconds", "0.2", "--json");
            assertEquals(0, local.exit(), local.out() + local.err());
            assertEquals(WEB_LABELS, labels(local.lastJson()));

            // A snapshot from before snapshots kept labels restores with none.
            // A snapshot from before snapshots kept labels restores with none; on a host whose TSC the KVM guest
            // cannot keep, the restore is refused, with the reason.
            unpackGolden(backend, snapshots.resolve("old/0.1.0"));
            List<String> vms = new ArrayList<>(List.of("web", "web-copy", "web-lazy"));
            if (GoldenSnapshots.restoresOn("0.1.0", backend, BackendTestSupport.open(backend).capabilities().tsc())) {
                JsonNode old = ok(ferry(agent, "vm", "restore", "old/0.1.0", "--name", "old", "--json")).lastJson();
                assertEquals("RUNNING", old.get("state").asText());
                assertEquals(Map.of(), labels(old));
                vms.add("old");
            } else {
                Cli.Result refused = ferry(agent, "vm", "restore", "old/0.1.0", "--name", "old");
                assertNotEquals(0, refused.exit());
                assertTrue(refused.err().contains("FAILED_PRECONDITION") && refused.err().contains("TSC"), refused.err());
            }

            // Labels edited on disk into ones CreateVm would refuse: the snapshot is not what SnapshotVm wrote.
            Path tampered = snapshots.resolve("nightly/tampered");
            Files.createDirectories(tampered);
            for (String f : List.of(Snapshot.MEMORY_FILE, Snapshot.STATE_FILE, Snapshot.MANIFEST_FILE)) {
                Files.copy(dir.resolve(f), tampered.resolve(f));
            }
            Files.writeString(tampered.resolve(Snapshot.MANIFEST_FILE), "label.bad\\ key=x\n",
                    StandardOpenOption.APPEND);
            Cli.Result bad = ferry(agent, "vm", "restore", "nightly/tampered", "--name", "tampered");
            assertNotEquals(0, bad.exit());
            assertTrue(bad.err().contains("DATA_LOSS") && bad.err().contains("'bad key' is not a label key"),
                    bad.err());

            Cli.Result missing = ferry(agent, "vm", "restore", "nightly/none");
            assertNotEquals(0, missing.exit());
            assertTrue(missing.err().contains("NOT_FOUND"), missing.err());

            for (String vm : vms) {
                ok(ferry(agent, "vm", "delete", vm));
            }
            assertFalse(ok(ferry(agent, "vm", "list")).out().contains("vms/"), "every VM deleted");
        }
    }
}
