package dev.ferry.k8s;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.MappingIterator;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.google.protobuf.ProtocolMessageEnum;
import dev.ferry.cli.Main;
import dev.ferry.k8s.operator.OperatorMain;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import javax.xml.parsers.DocumentBuilderFactory;
import org.junit.jupiter.api.Test;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import picocli.CommandLine;

/** Offline checks of the manifests: well-formed, and in step with the ferry.v1 API they front. */
class ManifestsTest {
    static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

    static List<JsonNode> docs() throws IOException {
        List<JsonNode> out = new ArrayList<>();
        try (Stream<Path> files = Files.list(Path.of("manifests"))) {
            for (Path p : files.filter(f -> f.toString().endsWith(".yaml")).sorted().toList()) {
                try (MappingIterator<JsonNode> it = YAML.readerFor(JsonNode.class).readValues(p.toFile())) {
                    while (it.hasNext()) {
                        out.add(it.next());
                    }
                }
            }
        }
        return out;
    }

    static JsonNode kind(String kind) throws IOException {
        return docs().stream().filter(d -> d.path("kind").asText().equals(kind)).findFirst()
                .orElseThrow(() -> new AssertionError("no " + kind));
    }

    @Test
    void everyDocumentIsAKubernetesObject() throws IOException {
        List<JsonNode> d = docs();
        assertTrue(d.size() >= 6);
        for (JsonNode n : d) {
            assertFalse(n.path("apiVersion").asText().isEmpty(), n.toString());
            assertFalse(n.path("kind").asText().isEmpty(), n.toString());
            assertTrue(n.path("metadata").path("name").asText().matches("[a-z0-9.-]+"), n.toString());
        }
    }

    private static Set<String> enumValues(JsonNode n) {
        Set<String> s = new HashSet<>();
        n.path("enum").forEach(v -> s.add(v.asText()));
        return s;
    }

    private static Set<String> protoValues(ProtocolMessageEnum[] values) {
        Set<String> s = new HashSet<>();
        Arrays.stream(values).filter(v -> !v.toString().endsWith("UNSPECIFIED") && !v.toString().equals("UNRECOGNIZED"))
                .forEach(v -> s.add(v.toString()));
        return s;
    }

    static JsonNode crd(String name) throws IOException {
        return docs().stream().filter(d -> d.path("kind").asText().equals("CustomResourceDefinition")
                && d.at("/metadata/name").asText().equals(name)).findFirst().orElseThrow(() -> new AssertionError("no " + name));
    }

    @Test
    void crdEnumsMatchTheApi() throws IOException {
        JsonNode crd = crd("virtualmachinemigrations.ferry.dev");
        assertEquals(crd.at("/spec/names/plural").asText() + "." + crd.at("/spec/group").asText(),
                crd.at("/metadata/name").asText());
        JsonNode schema = crd.at("/spec/versions/0/schema/openAPIV3Schema/properties");
        assertEquals(protoValues(MigrationMode.values()), enumValues(schema.at("/spec/properties/mode")));
        assertEquals(protoValues(MigrationPolicy.NoConvergenceAction.values()),
                enumValues(schema.at("/spec/properties/policy/properties/onNoConvergence")));
        assertEquals(protoValues(MigrationPolicy.PageCompression.values()),
                enumValues(schema.at("/spec/properties/policy/properties/pageCompression")));
        Set<String> phases = protoValues(Migration.Phase.values());
        phases.add("PENDING"); // the operator's own, before the agent has the migration
        assertEquals(phases, enumValues(schema.at("/status/properties/phase")));
        // No schema defaults where a MigrationPolicy fills in: the API server would set them, and the
        // operator could no longer tell "unset" (the policy's value) from the default.
        assertFalse(schema.at("/spec/properties/mode").has("default"));
        assertFalse(schema.at("/spec/properties/policy/properties/maxDowntime").has("default"));
        // every policy field of the API is settable from the resource
        Set<String> crdPolicy = new HashSet<>();
        schema.at("/spec/properties/policy/properties").fieldNames().forEachRemaining(crdPolicy::add);
        Set<String> apiPolicy = new HashSet<>();
        MigrationPolicy.getDescriptor().getFields().forEach(f -> apiPolicy.add(f.getJsonName()));
        assertEquals(apiPolicy, crdPolicy);
    }

    @Test
    void migrationPolicyCrdIsClusterScopedAndMapsOntoTheMigrationSpec() throws IOException {
        JsonNode crd = crd("migrationpolicies.ferry.dev");
        assertEquals("Cluster", crd.at("/spec/scope").asText());
        assertEquals(crd.at("/spec/names/plural").asText() + "." + crd.at("/spec/group").asText(),
                crd.at("/metadata/name").asText());
        JsonNode policy = crd.at("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties");
        JsonNode vmm = crd("virtualmachinemigrations.ferry.dev").at("/spec/versions/0/schema/openAPIV3Schema/properties/spec");
        assertEquals(protoValues(MigrationMode.values()), enumValues(policy.at("/mode")));
        // every setting a policy supplies lands on a field of the migration's spec
        for (String[] f : new String[][] {{"maxDowntime", "/properties/policy/properties/maxDowntime"},
                {"bandwidthLimitBytesPerSecond", "/properties/policy/properties/bandwidthLimitBytesPerSecond"},
                {"completionTimeout", "/properties/policy/properties/maxTotalTime"}, {"mode", "/properties/mode"}}) {
            assertFalse(policy.path(f[0]).isMissingNode(), f[0]);
            assertEquals(policy.path(f[0]).path("type"), vmm.at(f[1]).path("type"), f[0]);
        }
        assertEquals("boolean", policy.at("/allowAutoConverge/type").asText());
        assertEquals(enumValues(vmm.at("/properties/policy/properties/pageCompression")),
                enumValues(policy.at("/pageCompression")));
        assertEquals("boolean", vmm.at("/properties/policy/properties/autoConverge/properties/enabled/type").asText());
        Set<String> autoConverge = new HashSet<>();
        vmm.at("/properties/policy/properties/autoConverge/properties").fieldNames().forEachRemaining(autoConverge::add);
        Set<String> apiAutoConverge = new HashSet<>();
        dev.ferry.v1.AutoConverge.getDescriptor().getFields().forEach(f -> apiAutoConverge.add(f.getJsonName()));
        assertEquals(apiAutoConverge, autoConverge, "every auto-converge field is settable from the resource");
        for (String sel : List.of("virtualMachineMigrationSelector", "namespaceSelector")) {
            assertEquals("string", policy.at("/selectors/properties/" + sel + "/additionalProperties/type").asText(), sel);
        }
        // the status carries conditions, which a real API server would prune if undeclared
        assertEquals("array", crd.at("/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/conditions/type")
                .asText());
    }

    @Test
    void daemonSetRunsTheAgentOnItsDeclaredPortsWithKvm() throws IOException {
        JsonNode ds = kind("DaemonSet");
        JsonNode c = ds.at("/spec/template/spec/containers/0");
        List<String> args = agentCommandLine(c);
        assertEquals("agent", args.get(0));
        Set<String> ports = new HashSet<>();
        c.path("ports").forEach(p -> ports.add(p.path("containerPort").asText()));
        for (String listener : List.of("--control", "--data", "--pager", "--metrics")) {
            assertTrue(ports.contains(args.get(args.indexOf(listener) + 1).split(":")[1]), listener + " port declared");
        }
        // The very command line the container runs parses with the agent's own options.
        List<String> resolved = args.stream().map(a -> a.replace("$(NODE_NAME)", "node-1")).toList();
        new CommandLine(new Main()).parseArgs(resolved.toArray(String[]::new));
        // Probes run `ferry health` with the agent's own certificate (the kubelet's gRPC probe is plaintext).
        for (String probe : List.of("readinessProbe", "livenessProbe")) {
            List<String> cmd = new ArrayList<>();
            c.path(probe).path("exec").path("command").forEach(a -> cmd.add(a.asText()));
            assertEquals(List.of("ferry", "health"), cmd.subList(0, 2), probe);
            assertTrue(cmd.contains("--tls-cert"), probe + " dials over mutual TLS");
            new CommandLine(new Main()).parseArgs(cmd.subList(1, cmd.size()).toArray(String[]::new));
        }
        assertEquals(ds.at("/spec/selector/matchLabels"), ds.at("/spec/template/metadata/labels"));
        Set<String> mounts = new HashSet<>();
        c.path("volumeMounts").forEach(m -> mounts.add(m.path("mountPath").asText()));
        assertTrue(mounts.containsAll(Set.of("/dev/kvm", "/dev/userfaultfd")));
        assertTlsFromSecret(ds, args, "ferry-agent-tls");
        assertEquals(kind("ServiceAccount").at("/metadata/name").asText(),
                ds.at("/spec/template/spec/serviceAccountName").asText());
    }

    @Test
    void theOperatorRunsWithTheRoleItNeedsAndFindsAgentsOnTheirPort() throws IOException {
        JsonNode op = docs().stream().filter(d -> d.path("kind").asText().equals("Deployment")
                && d.at("/metadata/name").asText().equals("ferry-operator")).findFirst().orElseThrow();
        JsonNode c = op.at("/spec/template/spec/containers/0");
        List<String> args = new ArrayList<>();
        c.path("args").forEach(a -> args.add(a.asText()));
        OperatorMain operator = new OperatorMain(); // its command line parses with its own options
        new CommandLine(operator).parseArgs(args.toArray(String[]::new));
        assertTlsFromSecret(op, args, "ferry-operator-tls");
        JsonNode agent = kind("DaemonSet").at("/spec/template/spec/containers/0");
        List<String> agentArgs = agentCommandLine(agent);
        assertEquals(agentArgs.get(agentArgs.indexOf("--control") + 1).split(":")[1], String.valueOf(operator.agentPort()),
                "the operator dials the port the agents listen on");
        String sa = op.at("/spec/template/spec/serviceAccountName").asText();
        JsonNode binding = kind("ClusterRoleBinding");
        assertEquals(sa, binding.at("/subjects/0/name").asText());
        Set<String> granted = new HashSet<>();
        kind("ClusterRole").path("rules").forEach(r -> r.path("resources").forEach(x -> r.path("verbs")
                .forEach(v -> granted.add(x.asText() + ":" + v.asText()))));
        assertTrue(granted.containsAll(Set.of("virtualmachinemigrations:watch", "virtualmachinemigrations:list",
                "virtualmachinemigrations:patch", "virtualmachinemigrations/status:patch", "nodes:get", "nodes:list",
                "migrationpolicies:list", "migrationpolicies:watch", "migrationpolicies/status:patch",
                "namespaces:get", "events:create")), granted.toString());
        // Several replicas only with leader election, and the Lease is theirs to take.
        assertTrue(op.at("/spec/replicas").asInt() <= 1 || operator.leaderElect(), "replicas without leader election");
        JsonNode role = docs().stream().filter(d -> d.path("kind").asText().equals("Role")
                && d.at("/metadata/name").asText().equals("ferry-operator-leader-election")).findFirst().orElseThrow();
        assertEquals(op.at("/metadata/namespace"), role.at("/metadata/namespace"), "the Lease lives beside the operator");
        Set<String> leases = new HashSet<>();
        role.path("rules").forEach(r -> r.path("verbs").forEach(v -> leases.add(v.asText())));
        assertTrue(leases.containsAll(Set.of("get", "create", "update")), leases.toString());
        JsonNode roleBinding = docs().stream().filter(d -> d.path("kind").asText().equals("RoleBinding")
                && d.at("/roleRef/name").asText().equals("ferry-operator-leader-election")).findFirst().orElseThrow();
        assertEquals(sa, roleBinding.at("/subjects/0/name").asText());
        if (args.contains("--metrics")) {
            String port = args.get(args.indexOf("--metrics") + 1).split(":")[1];
            Set<String> declared = new HashSet<>();
            c.path("ports").forEach(p -> declared.add(p.path("containerPort").asText()));
            assertTrue(declared.contains(port), "metrics port declared");
        }
    }

    @Test
    void workloadsRunTheImagesTheBuildMakes() throws Exception {
        JsonNode agent = kind("DaemonSet").at("/spec/template/spec/containers/0");
        assertEquals(builtImage("agent"), agent.path("image").asText());
        // The probes' `ferry` is the agent image's launcher on its PATH.
        assertEquals(imageProperty("agent", "ferry.image.launcher"),
                agent.at("/readinessProbe/exec/command/0").asText());
        JsonNode operator = docs().stream().filter(d -> d.path("kind").asText().equals("Deployment")
                && d.at("/metadata/name").asText().equals("ferry-operator")).findFirst().orElseThrow()
                .at("/spec/template/spec/containers/0");
        assertEquals(builtImage("operator"), operator.path("image").asText());
        assertEquals(imageProperty("operator", "ferry.image.launcher"), operator.at("/command/0").asText());
    }

    /** The NAME:TAG that Jib's buildTar gives image/MODULE's tarball: image/pom.xml's to.image, expanded. */
    private static String builtImage(String module) throws Exception {
        Element to = (Element) pom(Path.of("..", "image", "pom.xml")).getElementsByTagName("to").item(0);
        String pattern = to.getElementsByTagName("image").item(0).getTextContent().trim();
        assertEquals("${ferry.image.name}:${project.version}", pattern, "image/pom.xml's naming");
        Document modulePom = pom(Path.of("..", "image", module, "pom.xml"));
        String version = ((Element) modulePom.getElementsByTagName("parent").item(0))
                .getElementsByTagName("version").item(0).getTextContent().trim();
        return imageProperty(module, "ferry.image.name") + ":" + version;
    }

    private static String imageProperty(String module, String name) throws Exception {
        Element properties = (Element) pom(Path.of("..", "image", module, "pom.xml"))
                .getElementsByTagName("properties").item(0);
        return properties.getElementsByTagName(name).item(0).getTextContent().trim();
    }

    private static Document pom(Path file) throws Exception {
        return DocumentBuilderFactory.newInstance().newDocumentBuilder().parse(file.toFile());
    }

    /**
     * The agent container's command line as the agent sees it: its args with the ferry-agent-config ConfigMap's
     * agent.yaml (mounted where --config points) expanded the way `ferry agent --config` does.
     */
    private static List<String> agentCommandLine(JsonNode container) throws IOException {
        List<String> args = new ArrayList<>();
        container.path("args").forEach(a -> args.add(a.asText()));
        String mounted = args.get(args.indexOf("--config") + 1);
        JsonNode config = kind("ConfigMap");
        assertEquals("ferry-agent-config", config.at("/metadata/name").asText());
        java.nio.file.Path file = java.nio.file.Files.createTempFile("agent", ".yaml");
        try {
            java.nio.file.Files.writeString(file, config.at("/data/" + mounted.substring(mounted.lastIndexOf('/') + 1))
                    .asText());
            List<String> local = new ArrayList<>(args);
            local.set(local.indexOf(mounted), file.toString());
            List<String> expanded = new ArrayList<>(List.of(dev.ferry.cli.AgentConfigFile.expand(local.toArray(String[]::new))));
            expanded.set(expanded.indexOf(file.toString()), mounted);
            return expanded;
        } finally {
            java.nio.file.Files.deleteIfExists(file);
        }
    }

    /** Mutual TLS is on (no --insecure), and every --tls-* file lies in a volume mounted from {@code secret}. */
    private static void assertTlsFromSecret(JsonNode workload, List<String> args, String secret) {
        assertFalse(args.contains("--insecure"), args.toString());
        JsonNode pod = workload.at("/spec/template/spec");
        String volume = null;
        for (JsonNode v : pod.path("volumes")) {
            if (v.at("/secret/secretName").asText().equals(secret)) {
                volume = v.path("name").asText();
            }
        }
        assertTrue(volume != null, "a volume from Secret " + secret);
        String mountPath = null;
        for (JsonNode m : pod.at("/containers/0/volumeMounts")) {
            if (m.path("name").asText().equals(volume)) {
                mountPath = m.path("mountPath").asText();
            }
        }
        assertTrue(mountPath != null, "Secret " + secret + " is mounted");
        for (String flag : List.of("--tls-cert", "--tls-key", "--tls-ca")) {
            assertTrue(args.contains(flag), flag);
            assertTrue(args.get(args.indexOf(flag) + 1).startsWith(mountPath + "/"), flag + " reads from the Secret");
        }
    }
}
