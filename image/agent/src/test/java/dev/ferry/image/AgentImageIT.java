package dev.ferry.image;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.ferry.security.CertificateAuthority;
import dev.ferry.security.TlsFiles;
import dev.ferry.security.TransportSecurity;
import io.grpc.ManagedChannel;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Runs the agent image the build just wrote, the way a node would but without a Docker engine: umoci unpacks
 * the OCI tarball into a runtime bundle, runc runs it (host network, loopback only) as an agent on the process
 * backend with this test's certificates mounted, and the agent must answer gRPC health over mutual TLS, both
 * to this JVM and to the DaemonSet's probe command run inside the container.
 *
 * <p>ferry.image.requireRun=auto (default): where umoci and runc (or crun) are installed and we are root the
 * test must pass; elsewhere it skips and says what is missing. true: it fails there too.
 */
class AgentImageIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long TOOL_TIMEOUT_S = 120;
    private static final long READY_TIMEOUT_S = 180;

    @Test
    void theImageRunsAnAgentThatAnswersHealthOverMutualTls() throws Exception {
        String tarProperty = System.getProperty("ferry.image.tar");
        assertTrue(tarProperty != null, "ferry.image.tar unset: run by the pom's image-run execution, after package");
        Path tar = Path.of(tarProperty);
        String ref = System.getProperty("ferry.image.ref");
        assertTrue(Files.isRegularFile(tar), "the build wrote " + tar);
        String runtime = runtime();

        Path work = tar.resolveSibling("image-run").toAbsolutePath();
        deleteTree(work);
        Path layout = work.resolve("layout");
        Path bundle = work.resolve("bundle");
        Path certs = work.resolve("certs");
        Files.createDirectories(layout);
        CertificateAuthority.init(certs, List.of(), List.of());

        run(List.of("tar", "-xf", tar.toString(), "-C", layout.toString()));
        // The name the manifests use is the one the tarball carries.
        assertEquals(ref, JSON.readTree(layout.resolve("index.json").toFile())
                .at("/manifests/0/annotations/org.opencontainers.image.ref.name").asText());
        run(List.of("umoci", "unpack", "--image", layout + ":" + ref, bundle.toString()));
        configure(bundle.resolve("config.json"), certs);

        String id = "ferry-image-it-" + ProcessHandle.current().pid();
        Path log = work.resolve("agent.log");
        Process container = new ProcessBuilder(runtime, "run", "--bundle", bundle.toString(), id)
                .redirectError(log.toFile()).start();
        try {
            com.fasterxml.jackson.databind.JsonNode ready = awaitReady(container, log);
            String control = ready.path("control").asText();
            if (Files.exists(Path.of("/usr/lib/x86_64-linux-gnu/libxxhash.so.0"))
                    || Files.exists(Path.of("/lib/x86_64-linux-gnu/libxxhash.so.0"))) { // rootfs.sh copies it in
                assertEquals("native libxxhash", ready.path("page_hash").asText(), "page hashes inside the image");
            }
            TransportSecurity asController = TransportSecurity.mutualTls(TlsFiles.in(certs, "controller"));
            ManagedChannel ch = asController.channelBuilder(control).build();
            try {
                assertEquals(ServingStatus.SERVING, HealthGrpc.newBlockingStub(ch).withDeadlineAfter(30, TimeUnit.SECONDS)
                        .check(HealthCheckRequest.getDefaultInstance()).getStatus());
            } finally {
                ch.shutdownNow();
            }
            // The DaemonSet's readiness and liveness probe, as the kubelet would exec it in the container.
            String probe = run(List.of(runtime, "exec", id, "ferry", "health", "--agent", control,
                    "--tls-cert", "/etc/ferry/tls/agent.crt", "--tls-key", "/etc/ferry/tls/agent.key",
                    "--tls-ca", "/etc/ferry/tls/ca.crt"));
            assertTrue(probe.contains("SERVING"), probe);
        } finally {
            stop(runtime, id, container);
        }
    }

    /** runc, else crun; or why this host cannot run the image (a skip in auto mode, a failure if required). */
    private static String runtime() throws IOException {
        String why = null;
        String runtime = onPath("runc") ? "runc" : onPath("crun") ? "crun" : null;
        if (!onPath("umoci")) {
            why = "umoci is not installed (apt-get install umoci)";
        } else if (runtime == null) {
            why = "neither runc nor crun is installed (apt-get install runc)";
        } else if (!Integer.valueOf(0).equals(Files.getAttribute(Path.of("/proc/self"), "unix:uid"))) {
            why = "not root: the test runs the container rootful";
        }
        if (why != null) {
            String message = "cannot run the agent image: " + why;
            System.err.println("AgentImageIT: " + message);
            if ("true".equals(System.getProperty("ferry.image.requireRun"))) {
                fail(message + " (ferry.image.requireRun=true)");
            }
            Assumptions.abort(message);
        }
        return runtime;
    }

    private static boolean onPath(String tool) {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            if (Files.isExecutable(Path.of(dir, tool))) {
                return true;
            }
        }
        return false;
    }

    /**
     * The bundle umoci made runs the image's own entrypoint with: the agent's arguments, the host's network
     * namespace (nothing to set up, the agent listens on loopback), the certificates where the DaemonSet mounts
     * its Secret, and /dev/userfaultfd as the DaemonSet passes it (the process backend needs it).
     */
    private static void configure(Path config, Path certs) throws IOException {
        ObjectNode c = (ObjectNode) JSON.readTree(config.toFile());
        ObjectNode process = (ObjectNode) c.get("process");
        process.put("terminal", false);
        ArrayNode args = (ArrayNode) process.get("args"); // the image's entrypoint: /usr/local/bin/ferry
        assertEquals("/usr/local/bin/ferry", args.path(0).asText(), "entrypoint");
        for (String a : List.of("agent", "--name", "image-it", "--control", "127.0.0.1:0", "--data", "127.0.0.1:0",
                "--backend", "process", "--state-dir", "none", "--no-warmup", "--tls-cert", "/etc/ferry/tls/agent.crt",
                "--tls-key", "/etc/ferry/tls/agent.key", "--tls-ca", "/etc/ferry/tls/ca.crt")) {
            args.add(a);
        }
        ObjectNode linux = (ObjectNode) c.get("linux");
        ArrayNode namespaces = JSON.createArrayNode();
        linux.get("namespaces").forEach(n -> {
            if (!n.path("type").asText().equals("network")) {
                namespaces.add(n);
            }
        });
        linux.set("namespaces", namespaces);
        ((ArrayNode) c.get("mounts")).addObject().put("destination", "/etc/ferry/tls").put("type", "bind")
                .put("source", certs.toString()).putArray("options").add("rbind").add("ro");
        Path uffd = Path.of("/dev/userfaultfd");
        if (Files.exists(uffd)) {
            long rdev = ((Number) Files.getAttribute(uffd, "unix:rdev")).longValue(); // glibc's dev_t layout
            long major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & ~0xfffL);
            long minor = (rdev & 0xff) | ((rdev >> 12) & ~0xffL);
            linux.withArray("devices").addObject().put("path", "/dev/userfaultfd").put("type", "c")
                    .put("major", major).put("minor", minor).put("fileMode", 0600).put("uid", 0).put("gid", 0);
            (linux.has("resources") ? (ObjectNode) linux.get("resources") : linux.putObject("resources")).withArray("devices").addObject().put("allow", true)
                    .put("type", "c").put("major", major).put("minor", minor).put("access", "rw");
        } // else the agent says in one line that the process backend has no userfaultfd: the test fails with it
        JSON.writerWithDefaultPrettyPrinter().writeValue(config.toFile(), c);
    }

    /** The agent's ready line; the log's tail if it exits or stalls first. */
    private static com.fasterxml.jackson.databind.JsonNode awaitReady(Process container, Path log) throws Exception {
        CompletableFuture<com.fasterxml.jackson.databind.JsonNode> ready = CompletableFuture.supplyAsync(() -> {
            try (BufferedReader out = new BufferedReader(
                    new InputStreamReader(container.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line; (line = out.readLine()) != null; ) {
                    if (line.startsWith("{") && JSON.readTree(line).path("event").asText().equals("ready")) {
                        return JSON.readTree(line);
                    }
                }
                return null;
            } catch (IOException e) {
                return null;
            }
        });
        com.fasterxml.jackson.databind.JsonNode control;
        try {
            control = ready.get(READY_TIMEOUT_S, TimeUnit.SECONDS);
        } catch (TimeoutException e) {
            control = null;
        } catch (ExecutionException e) {
            throw new AssertionError(e.getCause());
        }
        if (control == null) {
            String what = container.waitFor(5, TimeUnit.SECONDS)
                    ? "exited with " + container.exitValue() + " before reporting ready"
                    : "did not report ready within " + READY_TIMEOUT_S + " s";
            fail("the agent in the container " + what + "; its log:\n" + tail(log));
        }
        return control;
    }

    private static void stop(String runtime, String id, Process container) throws Exception {
        try {
            run(List.of(runtime, "kill", id, "KILL"));
        } catch (AssertionError alreadyGone) {
            // it exited by itself: the assertions above say why
        }
        if (!container.waitFor(TOOL_TIMEOUT_S, TimeUnit.SECONDS)) {
            container.destroyForcibly();
        }
        run(List.of(runtime, "delete", "--force", id));
    }

    /** Runs a tool to completion; its combined output, or a failure with it. */
    private static String run(List<String> cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        CompletableFuture<String> out = CompletableFuture.supplyAsync(() -> {
            try {
                return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            } catch (IOException e) {
                return "(output unreadable: " + e.getMessage() + ")";
            }
        });
        if (!p.waitFor(TOOL_TIMEOUT_S, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail(String.join(" ", cmd) + ": still running after " + TOOL_TIMEOUT_S + " s");
        }
        String output = out.join();
        if (p.exitValue() != 0) {
            fail(String.join(" ", cmd) + ": exit " + p.exitValue() + ":\n" + output);
        }
        return output;
    }

    private static String tail(Path log) throws IOException {
        if (!Files.exists(log)) {
            return "(no log)";
        }
        List<String> lines = Files.readAllLines(log);
        return String.join("\n", lines.subList(Math.max(0, lines.size() - 30), lines.size()));
    }

    private static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        List<Path> paths = new ArrayList<>();
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(paths::add);
        }
        for (Path p : paths) {
            Files.delete(p);
        }
    }
}
