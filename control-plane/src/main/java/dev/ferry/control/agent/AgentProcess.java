package dev.ferry.control.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.ferry.security.TransportSecurity;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A Ferry agent in its own JVM on loopback, started from this JVM's classpath: what the demo and the
 * integration tests use to get real, separate source and destination processes.
 */
public final class AgentProcess implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * JVM flags for agents. C1 only: on a 2-core host where the guest's vCPU spins on one core, C2's
     * compiler threads compete with the migration for the other; measured with {@code ferry demo}
     * (1 GiB, 256 MiB idle working set): 936 ms total and 23 ms downtime with C1 only, against
     * 1.2-1.4 s and 46-60 ms with tiered C2. The bin/ launcher uses the same flags for {@code agent}.
     */
    public static final List<String> AGENT_JVM_FLAGS = List.of("-XX:TieredStopAtLevel=1", "-XX:+UseParallelGC");

    private final String name;
    private final Process process;
    private final String control;
    private final String data;
    private final String pager;
    private final Path log;
    private final TransportSecurity client;
    private final boolean tls;
    private ManagedChannel channel;

    private AgentProcess(String name, Process process, String control, String data, String pager, Path log,
            TransportSecurity client, boolean tls) {
        this.client = client;
        this.tls = tls;
        this.pager = pager;
        this.name = name;
        this.process = process;
        this.control = control;
        this.data = data;
        this.log = log;
    }

    /**
     * Starts {@code ferry agent} on free loopback ports with extra options {@code agentArgs} (which carry
     * its --tls-* files or --insecure), waits for its "ready" line and for its health to report SERVING;
     * {@link #channel()} dials it with {@code client}. The agent's own log goes to {@code log}.
     */
    public static AgentProcess start(String name, Path log, List<String> jvmArgs, List<String> agentArgs,
            TransportSecurity client) throws IOException {
        return start(name, log, List.of(), "127.0.0.1", jvmArgs, agentArgs, client);
    }

    /**
     * As above, the JVM started through {@code wrapper} (e.g. {@code ip netns exec NS}: the agent runs in another
     * network namespace) and listening on {@code listenHost} (any port).
     */
    public static AgentProcess start(String name, Path log, List<String> wrapper, String listenHost, List<String> jvmArgs,
            List<String> agentArgs, TransportSecurity client) throws IOException {
        List<String> cmd = new ArrayList<>(wrapper);
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(AGENT_JVM_FLAGS);
        String kvmDevice = System.getProperty(dev.ferry.backends.Backends.KVM_DEVICE_PROPERTY, "");
        if (!kvmDevice.isBlank()) { // a stand-in for a host without KVM reaches the agents too
            cmd.add("-D" + dev.ferry.backends.Backends.KVM_DEVICE_PROPERTY + "=" + kvmDevice);
        }
        cmd.addAll(jvmArgs);
        cmd.add("-cp");
        // Under Surefire java.class.path is a manifest-only jar; the real test classpath is here.
        cmd.add(System.getProperty("surefire.test.class.path", System.getProperty("java.class.path")));
        cmd.add("dev.ferry.cli.Main");
        cmd.add("agent");
        cmd.add("--name");
        cmd.add(name);
        cmd.add("--control");
        cmd.add(listenHost + ":0");
        cmd.add("--data");
        cmd.add(listenHost + ":0");
        cmd.addAll(agentArgs);
        Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        String line;
        while ((line = out.readLine()) != null) {
            if (line.startsWith("{")) {
                JsonNode ready = JSON.readTree(line);
                if ("ready".equals(ready.path("event").asText())) {
                    AgentProcess a = new AgentProcess(name, p, ready.get("control").asText(), ready.get("data").asText(),
                            ready.path("pager").asText(), log, client, ready.path("tls").asBoolean(false));
                    // `ferry agent` reports SERVING before it prints "ready" (after its warm-up), so health
                    // is not polled here: that would need the agent's certificate to pass the client's checks,
                    // which tests of impostor agents deliberately fail.
                    return a;
                }
            }
        }
        p.destroyForcibly();
        throw new IOException("agent " + name + " exited before it was ready; see " + log);
    }

    public String name() {
        return name;
    }

    /** Follows the agent's health (Watch) until it reports SERVING: after its warm-up, not merely listening. */
    private void awaitServing() throws IOException {
        try {
            Iterator<HealthCheckResponse> it = HealthGrpc.newBlockingStub(channel()).withDeadlineAfter(120, TimeUnit.SECONDS)
                    .watch(HealthCheckRequest.getDefaultInstance());
            while (it.hasNext()) {
                if (it.next().getStatus() == HealthCheckResponse.ServingStatus.SERVING) {
                    return;
                }
            }
            throw new IOException("agent " + name + " health stream ended before SERVING; see " + log);
        } catch (StatusRuntimeException e) {
            process.destroyForcibly();
            throw new IOException("agent " + name + " never reported SERVING (" + e.getStatus() + "); see " + log, e);
        }
    }

    public String controlAddress() {
        return control;
    }

    public String dataAddress() {
        return data;
    }

    /** Where the agent's pager listens. */
    public String pagerAddress() {
        return pager;
    }

    /** True when the agent said, when ready, that it listens with mutual TLS. */
    public boolean tls() {
        return tls;
    }

    public Path log() {
        return log;
    }

    public long pid() {
        return process.pid();
    }

    public boolean isAlive() {
        return process.isAlive();
    }

    /** A channel to the agent's control listener (created once), as the client given at start. */
    public synchronized ManagedChannel channel() {
        if (channel == null) {
            channel = dev.ferry.control.client.ReadRetries.apply(client.channelBuilder(control)).maxInboundMessageSize(16 << 20)
                    .build();
        }
        return channel;
    }

    /** SIGKILL: the agent dies without any cleanup, as a crashed host would. */
    public void kill() throws InterruptedException {
        process.destroyForcibly();
        process.waitFor(30, TimeUnit.SECONDS);
    }

    @Override
    public void close() throws InterruptedException {
        synchronized (this) {
            if (channel != null) {
                channel.shutdownNow();
            }
        }
        process.destroy(); // SIGTERM: the agent's shutdown hook frees its VMs
        if (!process.waitFor(15, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            process.waitFor(15, TimeUnit.SECONDS);
        }
    }
}
