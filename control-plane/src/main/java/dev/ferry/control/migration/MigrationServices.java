package dev.ferry.control.migration;

import dev.ferry.control.agent.Agent;
import dev.ferry.control.agent.AgentServices;
import dev.ferry.dataplane.IncomingPages;
import dev.ferry.dataplane.PageTransferServer;
import dev.ferry.dataplane.postcopy.PageSource;
import dev.ferry.dataplane.postcopy.PagerServer;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * The migrations of one agent, outgoing and incoming, and the services that expose them: the
 * MigrationService on the control listener and PageTransferService on the data listener.
 */
public final class MigrationServices implements AgentServices {
    final Agent agent;
    final Channels channels;
    // Concurrent maps: gRPC threads, migration threads and the janitor all look migrations up.
    final ConcurrentMap<String, SourceDriver> outgoing = new ConcurrentHashMap<>();
    final ConcurrentMap<String, DestinationDriver> incoming = new ConcurrentHashMap<>();
    private final ConcurrentMap<String, DestinationDriver> byToken = new ConcurrentHashMap<>();
    /** Outgoing postcopy migrations' paused source memory, by session token, for the pager service. */
    final ConcurrentMap<String, PageSource> pagers = new ConcurrentHashMap<>();
    private final ScheduledExecutorService janitor = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "migration-janitor");
        t.setDaemon(true);
        return t;
    });

    /** IDs of the migrations an agent runs to warm itself up (not counted in its metrics). */
    public static final String WARMUP_ID_PREFIX = "ferry-warmup-";
    final MigrationMetrics metrics;
    /** What this agent's precopy switchovers cost besides their last pages, for the planner's downtime estimates. */
    final SwitchoverOverhead switchoverOverhead = new SwitchoverOverhead();
    /** Spans of the migrations (no-ops unless the agent's telemetry has a tracer), and their context across agents. */
    final MigrationTracing tracing;
    /** Injected into every outgoing migration but the warm-up ones; NONE unless the agent was started for tests. */
    final FaultInjection fault;
    /** The protocol version this agent speaks: CURRENT, or the one before it to drill mixed-version migrations. */
    final int protocolVersion;
    /** --max-outgoing-migrations, --max-incoming-migrations, --when-busy. */
    final MigrationLimiter limiter;
    /** Incoming migrations noted on disk while they run, for a restart after a crash to report. */
    final IncomingMarkers markers;
    /** Where migrations are held for a test to inject a fault; NONE on every production agent. */
    final FaultHold hold;
    /** How long a peer agent may stay silent before an incoming session gives up on it. */
    final java.time.Duration peerTimeout;

    public MigrationServices(Agent agent) {
        this(agent, io.opentelemetry.api.OpenTelemetry.noop());
    }

    /** Migration services whose metrics go to {@code telemetry}. */
    public MigrationServices(Agent agent, io.opentelemetry.api.OpenTelemetry telemetry) {
        this(agent, telemetry, FaultInjection.NONE);
    }

    /** As above, injecting {@code fault} into outgoing migrations (tests and demos only). */
    public MigrationServices(Agent agent, io.opentelemetry.api.OpenTelemetry telemetry, FaultInjection fault) {
        this(agent, telemetry, fault, ProtocolVersion.CURRENT);
    }

    /** As above, speaking {@code protocolVersion} (tests and compatibility drills: an older agent in this build). */
    public MigrationServices(Agent agent, io.opentelemetry.api.OpenTelemetry telemetry, FaultInjection fault,
            int protocolVersion) {
        this(agent, telemetry, fault, protocolVersion, MigrationLimiter.Limits.DEFAULT);
    }

    /** As above, with the agent's limits on concurrent migrations. */
    public MigrationServices(Agent agent, io.opentelemetry.api.OpenTelemetry telemetry, FaultInjection fault,
            int protocolVersion, MigrationLimiter.Limits limits) {
        this(agent, telemetry, fault, protocolVersion, limits, FaultHold.NONE,
                DestinationStateMachine.DEFAULT_IDLE_TIMEOUT, null);
    }

    /**
     * As above with the default limits, holding migrations at {@code hold} (tests only), and giving up on a peer
     * agent that stays silent for {@code peerTimeout} (an incoming session before the switchover, or verifying):
     * tests shorten it.
     */
    public MigrationServices(Agent agent, io.opentelemetry.api.OpenTelemetry telemetry, FaultInjection fault,
            int protocolVersion, FaultHold hold, java.time.Duration peerTimeout) {
        this(agent, telemetry, fault, protocolVersion, MigrationLimiter.Limits.DEFAULT, hold, peerTimeout, null);
    }

    /**
     * The agent's migration services: its limits on concurrent migrations, the test-only {@code hold}, the
     * {@code peerTimeout}, and each incoming migration noted in {@code stateDir} (null: nowhere) while it runs, so
     * a restart after a crash reports the migrations that died with the previous process (see
     * {@link IncomingMarkers}).
     */
    public MigrationServices(Agent agent, io.opentelemetry.api.OpenTelemetry telemetry, FaultInjection fault,
            int protocolVersion, MigrationLimiter.Limits limits, FaultHold hold, java.time.Duration peerTimeout,
            java.nio.file.Path stateDir) {
        this.limiter = new MigrationLimiter(limits);
        this.markers = new IncomingMarkers(stateDir);
        markers.reportLeftovers();
        this.hold = java.util.Objects.requireNonNull(hold, "hold");
        if (peerTimeout.isNegative() || peerTimeout.isZero()) {
            throw new IllegalArgumentException("peer timeout must be positive");
        }
        this.peerTimeout = peerTimeout;
        this.protocolVersion = ProtocolVersion.requireSpeakable(protocolVersion);
        this.agent = agent;
        this.tracing = new dev.ferry.control.telemetry.OtelMigrationTracing(telemetry);
        this.channels = new Channels(agent.security(), tracing.clientInterceptor());
        this.fault = java.util.Objects.requireNonNull(fault, "fault");
        this.metrics = new MigrationMetrics(telemetry,
                () -> outgoing.values().stream().filter(o -> !o.isTerminal()).count(),
                () -> incoming.values().stream().filter(i -> !i.isTerminal()).count(),
                () -> outgoing.values().stream().filter(o -> !o.isTerminal()).mapToLong(SourceDriver::dirtyRate).sum());
        // A few checks per timeout, at most every 5 s (each probe of a quiet peer is one health call).
        long every = Math.max(200, Math.min(5000, peerTimeout.toMillis() / 4));
        janitor.scheduleWithFixedDelay(this::checkSessions, every, every, TimeUnit.MILLISECONDS);
    }

    @Override
    public List<ServerServiceDefinition> controlServices() {
        // The trace interceptor is outermost (last): the session-token check and the call both run in its span.
        return List.of(ServerInterceptors.intercept(new MigrationServiceImpl(this), SessionTokens.serverInterceptor(),
                tracing.serverInterceptor()));
    }

    @Override
    public List<ServerServiceDefinition> dataServices() {
        return List.of(ServerInterceptors.intercept(PageTransferServer.service(this::pagesFor), tracing.serverInterceptor()));
    }

    @Override
    public List<ServerServiceDefinition> pagerServices() {
        return List.of(ServerInterceptors.intercept(PagerServer.service(token -> Optional.ofNullable(pagers.get(token))),
                tracing.serverInterceptor()));
    }

    private Optional<IncomingPages> pagesFor(String token) {
        // A stream may open late (its headers wait for the connection) while the session already moved
        // on; what may land when is checked per batch, not per stream.
        DestinationDriver s = byToken.get(token);
        return s != null && !s.isTerminal() ? Optional.of(s) : Optional.empty();
    }

    void addIncoming(DestinationDriver s) {
        incoming.put(s.name, s);
        byToken.put(s.token, s);
        markers.created(s.name, s.sourceAddress, s.vmName());
    }

    /** Migration modes offered for guests of {@code backend}: postcopy needs userfaultfd. */
    public static java.util.Set<dev.ferry.v1.MigrationMode> modes(dev.ferry.vm.GuestBackend backend) {
        return backend.capabilities().postcopy()
                ? java.util.Set.of(dev.ferry.v1.MigrationMode.PRECOPY, dev.ferry.v1.MigrationMode.POSTCOPY,
                        dev.ferry.v1.MigrationMode.HYBRID)
                : java.util.Set.of(dev.ferry.v1.MigrationMode.PRECOPY);
    }

    /** Every migration this agent takes part in, oldest first. */
    List<dev.ferry.v1.Migration> list() {
        List<dev.ferry.v1.Migration> all = new ArrayList<>();
        outgoing.values().forEach(m -> all.add(m.snapshot()));
        incoming.values().forEach(s -> all.add(s.snapshot()));
        all.sort(Comparator.comparing((dev.ferry.v1.Migration m) -> m.getCreateTime().getSeconds())
                .thenComparing(m -> m.getCreateTime().getNanos()).thenComparing(dev.ferry.v1.Migration::getName));
        return all;
    }

    /**
     * Incoming sessions whose source went silent or vanished are ended (see {@link DestinationDriver#checkSource});
     * outgoing migrations paused in postcopy learn whether their destination is gone ({@link
     * SourceDriver#checkDestination}).
     */
    private void checkSessions() {
        for (SourceDriver o : outgoing.values()) {
            try {
                o.checkDestination();
            } catch (RuntimeException e) {
                System.getLogger(MigrationServices.class.getName()).log(System.Logger.Level.WARNING,
                        "destination check of " + o.name, e);
            }
        }
        for (DestinationDriver s : incoming.values()) {
            try {
                if (!s.checkIdle()) {
                    s.checkSource(peerTimeout);
                }
            } catch (RuntimeException e) {
                System.getLogger(MigrationServices.class.getName()).log(System.Logger.Level.WARNING,
                        "idle check of " + s.name, e);
            }
            if (s.isTerminal()) {
                if (byToken.remove(s.token) != null) {
                    markers.ended(s.name);
                }
                s.releaseEnded(); // sessions that ended without commit or abort (e.g. no verification)
            }
        }
        forgetOldest(outgoing, SourceDriver::isTerminal, SourceDriver::snapshot);
        forgetOldest(incoming, DestinationDriver::isTerminal, DestinationDriver::snapshot);
    }

    /** Finished migrations kept per role for Get/List/WatchMigration; older ones are forgotten, oldest end first. */
    /** Soaks set it low, so that the kept history is full early and heap growth after it means a leak. */
    public static final String KEPT_FINISHED_PROPERTY = "ferry.keptFinishedMigrations";
    static final int KEPT_FINISHED = Integer.getInteger(KEPT_FINISHED_PROPERTY, 1000);

    private static <T> void forgetOldest(ConcurrentMap<String, T> all, java.util.function.Predicate<T> ended,
            java.util.function.Function<T, dev.ferry.v1.Migration> snapshot) {
        if (all.values().stream().filter(ended).count() <= KEPT_FINISHED) {
            return; // the common case: no snapshots built
        }
        List<java.util.Map.Entry<String, dev.ferry.v1.Migration>> finished = new ArrayList<>();
        for (var e : all.entrySet()) {
            if (ended.test(e.getValue())) {
                finished.add(java.util.Map.entry(e.getKey(), snapshot.apply(e.getValue())));
            }
        }
        if (finished.size() <= KEPT_FINISHED) {
            return;
        }
        finished.sort(Comparator.comparing((java.util.Map.Entry<String, dev.ferry.v1.Migration> e) ->
                e.getValue().getEndTime().getSeconds()).thenComparing(e -> e.getValue().getEndTime().getNanos()));
        finished.subList(0, finished.size() - KEPT_FINISHED).forEach(e -> all.remove(e.getKey()));
    }

    @Override
    public void close() {
        janitor.shutdownNow();
        incoming.keySet().forEach(markers::ended); // a clean stop: nothing was lost unseen
        for (SourceDriver m : outgoing.values()) {
            try {
                m.cancel(java.time.Duration.ofSeconds(5));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (RuntimeException e) {
                // already past the point of no return, or finished
            }
        }
        channels.close();
    }
}
