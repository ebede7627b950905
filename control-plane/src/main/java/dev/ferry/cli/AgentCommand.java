package dev.ferry.cli;

import dev.ferry.backends.Backends;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.migration.FaultInjection;
import dev.ferry.control.migration.MigrationLimiter;
import dev.ferry.control.migration.MigrationServices;
import dev.ferry.control.vm.GuestAdmission;
import io.opentelemetry.api.OpenTelemetry;
import dev.ferry.control.telemetry.AgentTelemetry;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code ferry agent}: serve VMs and migrations until terminated. */
@Command(name = "agent", mixinStandardHelpOptions = true,
        description = "Run a Ferry agent: VM and migration services on --control, page transfer on --data.")
final class AgentCommand implements Callable<Integer> {
    @Option(names = "--config", paramLabel = "FILE", description = "Read options from this YAML file: keys are the"
            + " long option names without dashes (control: 0.0.0.0:7001, tls-cert: ..., insecure: true); options given"
            + " on the command line win.")
    Path config;

    @Option(names = "--control", required = true, description = "Control-plane listen address HOST:PORT (port 0 = any).")
    String control;

    @Option(names = "--data", required = true, description = "Data-plane listen address HOST:PORT (port 0 = any).")
    String data;

    @Option(names = "--name", defaultValue = "agent", description = "Agent name, used in logs (default ${DEFAULT-VALUE}).")
    String name;

    @Option(names = "--pager", description = "Postcopy pager listen address HOST:PORT (default: the data host, any port).")
    String pager;

    @Option(names = "--advertise-data", description = "Data-plane address peers should dial, if not the listen address.")
    String advertiseData;

    @Option(names = "--advertise-pager", description = "Pager address peers should dial, if not the listen address.")
    String advertisePager;

    @Option(names = "--console", description = "Copy guests' serial consoles to stderr.")
    boolean console;

    @Option(names = "--metrics", description = "Serve Prometheus metrics (OpenTelemetry) at http://HOST:PORT/metrics.")
    String metrics;

    @Option(names = "--otlp-endpoint", paramLabel = "URL", description = "Send traces over OTLP/gRPC to this collector,"
            + " e.g. http://localhost:4317 (default: one line per span to the log, at INFO).")
    String otlpEndpoint;

    @Option(names = "--no-warmup", description = "Skip the start-up self-migration that warms the JVM (first migration then pays for it).")
    boolean noWarmup;

    @Option(names = "--max-vms", defaultValue = "" + GuestAdmission.DEFAULT_MAX_VMS,
            description = "Most VMs at once, incoming migrations included (default ${DEFAULT-VALUE}).")
    int maxVms;

    @Option(names = "--max-guest-memory", paramLabel = "SIZE", description = "Most guest memory across all VMs, e.g. 64g"
            + " (default: the host's memory less a headroom of 5%, at least 512 MiB). Each new VM must also fit in"
            + " MemAvailable less that headroom.")
    ByteSize maxGuestMemory;
    @Option(names = "--snapshot-dir", defaultValue = "/var/lib/ferry/snapshots", paramLabel = "DIR",
            description = "Where 'ferry vm snapshot' writes and 'ferry vm restore --agent' reads; nothing outside it"
                    + " (default ${DEFAULT-VALUE}, created on first use).")
    java.nio.file.Path snapshotDir;

    @Option(names = "--max-outgoing-migrations", paramLabel = "N",
            defaultValue = "" + MigrationLimiter.Limits.DEFAULT_MAX_OUTGOING,
            description = "Most outgoing migrations at once, 1-" + MigrationLimiter.Limits.MAX
                    + " (default ${DEFAULT-VALUE}, as KubeVirt per node); see --when-busy for the rest.")
    int maxOutgoingMigrations;

    @Option(names = "--max-incoming-migrations", paramLabel = "N",
            defaultValue = "" + MigrationLimiter.Limits.DEFAULT_MAX_INCOMING,
            description = "Most incoming migrations at once, 1-" + MigrationLimiter.Limits.MAX + " (default"
                    + " ${DEFAULT-VALUE}); NegotiateMigration beyond it gets RESOURCE_EXHAUSTED before anything is allocated.")
    int maxIncomingMigrations;

    @Option(names = "--when-busy", paramLabel = "queue|refuse", defaultValue = "queue",
            description = "An outgoing migration beyond --max-outgoing-migrations, or refused at the destination's"
                    + " incoming limit: queue (default: phase QUEUED, started in arrival order) or refuse"
                    + " (RESOURCE_EXHAUSTED).")
    String whenBusy;

    @Option(names = "--inject-fault", defaultValue = "none", paramLabel = "FAULT",
            description = "Tests and demos only: inject FAULT into every migration to prove it is caught: none"
                    + " (default), drop-dirty-page (as a source: one stale page reaches the destination) or"
                    + " refuse-device-state (as a destination: every device-state stream is refused).")
    String injectFault;
    // Hidden, tests only: hold migrations at a point so the fault-matrix tests can inject a fault there.
    @Option(names = "--fault-hold-dir", hidden = true, paramLabel = "DIR", description = "Tests only: while"
            + " DIR/POINT.hold exists, hold migrations at POINT (negotiate, stop-and-copy, device-state, completing)"
            + " until DIR/POINT.release exists; DIR/POINT.reached says one is held.")
    java.nio.file.Path faultHoldDir;
    @Option(names = "--state-dir", paramLabel = "DIR", description = "Where the agent notes the migrations it is"
            + " receiving, so that after a crash its next start reports what died with it (default /run/ferry/NAME;"
            + " 'none' turns it off).")
    String stateDir;
    @Option(names = "--peer-timeout", hidden = true, paramLabel = "SECONDS", defaultValue = "60",
            description = "How long an incoming migration waits for a silent source before giving up (default 60).")
    double peerTimeoutSeconds;
    // Hidden: only for tests and compatibility drills (this build acting as the previous release's agent).
    @Option(names = "--protocol-version", hidden = true, paramLabel = "N",
            defaultValue = "" + dev.ferry.control.migration.ProtocolVersion.CURRENT,
            description = "Tests and compatibility drills only: speak migration protocol version N (1 or 2).")
    int protocolVersion;

    @picocli.CommandLine.Mixin
    BackendOption backend = new BackendOption();

    @picocli.CommandLine.Mixin
    dev.ferry.security.TlsOptions tls = new dev.ferry.security.TlsOptions();

    static MigrationLimiter.WhenBusy parseWhenBusy(String s) {
        return switch (s) {
            case "queue" -> MigrationLimiter.WhenBusy.QUEUE;
            case "refuse" -> MigrationLimiter.WhenBusy.REFUSE;
            default -> throw new IllegalArgumentException("--when-busy must be queue or refuse, not '" + s + "'");
        };
    }

    static InetSocketAddress parseAddress(String s) {
        int i = s.lastIndexOf(':');
        if (i <= 0 || i == s.length() - 1) {
            throw new IllegalArgumentException("address '" + s + "' must be HOST:PORT");
        }
        try {
            return new InetSocketAddress(s.substring(0, i), Integer.parseInt(s.substring(i + 1)));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("address '" + s + "' has a bad port");
        }
    }

    @Override
    public Integer call() throws Exception {
        dev.ferry.security.TransportSecurity security = tls.open(); // before anything starts: a bad flag is one line
        InetSocketAddress dataAt = parseAddress(data);
        FaultInjection fault = FaultInjection.parse(injectFault);
        dev.ferry.control.migration.FaultHold hold = faultHoldDir == null ? dev.ferry.control.migration.FaultHold.NONE
                : dev.ferry.control.migration.FaultHold.in(faultHoldDir);
        if (!(peerTimeoutSeconds > 0 && peerTimeoutSeconds <= 86400)) {
            throw new IllegalArgumentException("--peer-timeout must be within (0, 86400] seconds");
        }
        java.time.Duration peerTimeout = java.time.Duration.ofMillis((long) (peerTimeoutSeconds * 1000));
        dev.ferry.control.migration.FaultHold h = hold;
        java.nio.file.Path state = "none".equals(stateDir) ? null
                : stateDir != null ? java.nio.file.Path.of(stateDir) : java.nio.file.Path.of("/run/ferry", name);
        int version = dev.ferry.control.migration.ProtocolVersion.requireSpeakable(protocolVersion);
        AgentTelemetry telemetry = AgentTelemetry.start(name,
                otlpEndpoint == null ? null : AgentTelemetry.otlpEndpoint(otlpEndpoint),
                metrics == null ? null : parseAddress(metrics));
        OpenTelemetry t = telemetry.openTelemetry();
        GuestAdmission.Limits limits = new GuestAdmission.Limits(maxVms,
                maxGuestMemory == null ? 0 : maxGuestMemory.bytes());
        MigrationLimiter.Limits migrationLimits = new MigrationLimiter.Limits(maxOutgoingMigrations,
                maxIncomingMigrations, parseWhenBusy(whenBusy));
        Backends backends = backend.open();
        Agent agent = Agent.start(name, security, parseAddress(control), dataAt,
                pager != null ? parseAddress(pager) : new InetSocketAddress(dataAt.getAddress(), 0), Console.sink(console),
                backends, a -> new MigrationServices(a, t, fault, version, migrationLimits, h, peerTimeout, state), limits);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            telemetry.flush(); // first, while JUL's handlers are still likely open (its shutdown hook runs alongside)
            agent.close();
            telemetry.close(); // after the agent: the spans its migrations ended on the way out go too
        }, "agent-shutdown"));
        if (!noWarmup) {
            dev.ferry.control.agent.Warmup.run(agent); // over the listen addresses, before any is advertised
        }
        agent.snapshotsIn(snapshotDir);
        agent.advertise(advertiseData, advertisePager);
        agent.ready(); // health turns SERVING only now, after the warm-up
        // One machine-readable line so a parent process (demo, tests) learns the bound ports.
        var ready = Output.object().put("event", "ready").put("name", name)
                .put("control", agent.controlAddress()).put("data", agent.dataListenAddress())
                .put("pager", agent.pagerListenAddress())
                .put("backend", backends.preferred().kind().cliName()).put("tls", security.tls())
                .put("page_hash", dev.ferry.memory.PageHashes.implementation())
                .put("pid", ProcessHandle.current().pid());
        var offered = ready.putArray("backends");
        backends.offered().forEach(b -> offered.add(b.cliName()));
        System.out.println(Output.JSON.writeValueAsString(ready));
        System.out.flush();
        agent.awaitTermination();
        return 0;
    }
}
