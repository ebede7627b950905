package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.GetMigrationRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.ResumeMigrationRequest;
import dev.ferry.v1.Vm;
import dev.ferry.vm.Backend;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every fault in every phase of a migration between two agent processes, against the table committed in
 * {@code docs/fault-matrix.md}: each row is run (N/A rows are not) and what it observed must equal the row, so the
 * table cannot rot. Each run ends with the same check: the guest runs on at most one side, that side's guest
 * self-check finds 0 wrong pages, and every agent left standing answers health and lists the migration with its
 * phase and error. What was observed goes to {@code target/fault-matrix-BACKEND.md} (with {@code
 * -Dferry.faultMatrix.record=true} nothing is asserted against the table: how it is regenerated).
 *
 * <p>Phases too short to hit by timing are held with the agents' hidden {@code --fault-hold}; precopy and
 * postcopy last long enough under a bandwidth limit. Link cuts go through {@link TcpProxy}s on the control, data and
 * pager connections (every connection reset, new ones refused), which is what loopback offers.
 */
@ParameterizedClass(name = "on {0}")
@EnumSource(Backend.class)
@org.junit.jupiter.api.TestInstance(org.junit.jupiter.api.TestInstance.Lifecycle.PER_CLASS) // cells() reads backend
class FaultMatrixTest {
    static final Path TABLE = Path.of("..", "docs", "fault-matrix.md");
    static final boolean RECORD = Boolean.getBoolean("ferry.faultMatrix.record");
    /** Agents give up on a silent peer after this many seconds (the default is 60). */
    static final String PEER_TIMEOUT = "8";
    static final String HEADER = "| Fault | Phase | Outcome | Wrong pages | What the user sees | Why |\n"
            + "| --- | --- | --- | --- | --- | --- |\n";

    @Parameter
    Backend backend;

    /** Observed rows of this backend, in table order. */
    static final Map<String, Row> observed = new LinkedHashMap<>();
    static Pool pool;
    static final java.util.Set<Migration.Phase> TERMINAL = java.util.EnumSet.of(Migration.Phase.COMPLETED,
            Migration.Phase.FAILED, Migration.Phase.CANCELLED);

    record Row(String fault, String phase, String outcome, String wrongPages, String sees, String why) {
        String key() {
            return fault + " / " + phase;
        }

        String markdown() {
            return "| " + fault + " | " + phase + " | " + outcome + " | " + wrongPages + " | " + sees + " | " + why
                    + " |";
        }
    }

    /** The committed table's rows, in order. */
    static List<Row> committed() throws IOException {
        List<Row> rows = new ArrayList<>();
        for (String line : Files.readAllLines(TABLE, StandardCharsets.UTF_8)) {
            if (!line.startsWith("| ") || line.startsWith("| Fault") || line.startsWith("| ---")) {
                continue;
            }
            String[] c = line.strip().split("\\|", -1); // "| a | b |" -> "", a, b, ""
            c = java.util.Arrays.stream(c, 1, c.length - 1).map(String::strip).toArray(String[]::new);
            if (c.length != 6) {
                throw new IllegalStateException("a row of " + TABLE + " needs 6 cells: " + line);
            }
            rows.add(new Row(c[0], c[1], c[2], c[3], c[4], c[5]));
        }
        return rows;
    }

    /**
     * The rows this backend runs: every row that applies, on each backend this host has (28 cells, about 3 minutes
     * on KVM). N/A rows are not tests: they say why a fault has no such phase.
     */
    Stream<Arguments> cells() throws IOException {
        String only = System.getProperty("ferry.faultMatrix.rows", ""); // by hand: the rows whose key contains it
        return committed().stream().filter(r -> !r.outcome().startsWith("N/A"))
                .filter(r -> r.key().contains(only))
                .filter(r -> backend.name().equalsIgnoreCase(System.getProperty("ferry.faultMatrix.backend",
                        backend.name()))) // by hand: one backend's rows only
                .map(r -> Arguments.of(r.fault(), r.phase(), r));
    }

    @AfterParameterizedClassInvocation
    static void write(Backend backend) throws Exception {
        if (pool != null) {
            pool.close();
            pool = null;
        }
        if (observed.isEmpty()) {
            return;
        }
        StringBuilder md = new StringBuilder(HEADER);
        for (Row r : committed()) { // in table order: what was observed, and the N/A rows as they stand
            Row shown = r.outcome().startsWith("N/A") ? r : observed.get(r.key());
            if (shown != null) {
                md.append(shown.markdown()).append('\n');
            }
        }
        Files.createDirectories(Path.of("target"));
        Files.writeString(Path.of("target", "fault-matrix-" + backend.cliName() + ".md"), md);
        observed.clear();
    }

    @ParameterizedTest(name = "{0} in {1}", allowZeroInvocations = true) // -Dferry.faultMatrix.rows may leave a backend none
    @MethodSource("cells")
    void cell(String fault, String phase, Row expected) throws Exception {
        BackendTestSupport.assume(backend);
        Row row;
        if (Fault.of(fault) == Fault.DISK_FULL) {
            row = new SnapshotDiskFull(backend).run(expected);
        } else if (Fault.of(fault) == Fault.LOSS) {
            row = lossyLink(backend, Phase.of(phase), expected);
        } else {
            if (pool == null) {
                pool = new Pool(backend);
            }
            try (Cell c = new Cell(pool, Fault.of(fault), Phase.of(phase))) {
                row = c.run(expected);
            }
        }
        observed.put(row.key(), row);
        if (!RECORD) {
            assertEquals(expected.markdown(), row.markdown(), "observed row differs from " + TABLE);
        }
    }

    enum Fault {
        KILL_SOURCE("kill -9 source agent"), KILL_DESTINATION("kill -9 destination agent"),
        CUT_1S("link cut for 1 s"), CUT_FOR_GOOD("link cut for good"), LOSS("5 % loss"),
        REFUSE_DEVICE_STATE("destination refuses device state"), DISK_FULL("disk full");

        final String label;

        Fault(String label) {
            this.label = label;
        }

        static Fault of(String label) {
            return Stream.of(values()).filter(f -> f.label.equals(label)).findFirst()
                    .orElseThrow(() -> new IllegalArgumentException("unknown fault '" + label + "' in " + TABLE));
        }

        boolean cuts() {
            return this == CUT_1S || this == CUT_FOR_GOOD;
        }
    }

    enum Phase {
        NEGOTIATING("negotiating", "negotiate", false), PRECOPY("precopy", null, false),
        STOP_AND_COPY("stop-and-copy", "stop-and-copy", true), DEVICE_STATE("device state", "device-state", true),
        POSTCOPY("postcopy", null, false), COMPLETING("completing", "completing", true);

        final String label;
        final String holdPoint; // --fault-hold POINT, or null when the phase lasts long enough by itself
        final boolean heldBySource;

        Phase(String label, String holdPoint, boolean heldBySource) {
            this.label = label;
            this.holdPoint = holdPoint;
            this.heldBySource = heldBySource;
        }

        static Phase of(String label) {
            return Stream.of(values()).filter(p -> p.label.equals(label)).findFirst()
                    .orElseThrow(() -> new IllegalArgumentException("unknown phase '" + label + "' in " + TABLE));
        }
    }

    /**
     * The two agents the cells share (started afresh only when a cell killed one or left a migration paused), each
     * with its own hold directory, and the proxies that every migration's pages and faults go through (the control
     * connection too when the link is cut; otherwise the source dials the destination directly, so that a killed
     * destination refuses connections as a dead host's port does).
     */
    static final class Pool implements AutoCloseable {
        final Backend backend;
        final TcpProxy data = new TcpProxy();
        final TcpProxy pager = new TcpProxy();
        final TcpProxy control = new TcpProxy();
        final Path srcHold;
        final Path dstHold;
        final Path dstState; // every destination agent of the pool notes its incoming migrations here
        AgentProcess src;
        AgentProcess dst;
        boolean dstRefuses;
        int started;

        Pool(Backend backend) throws IOException {
            this.backend = backend;
            Files.createDirectories(Path.of("target"));
            srcHold = Files.createTempDirectory(Path.of("target").toAbsolutePath(), "fault-hold-src-");
            dstHold = Files.createTempDirectory(Path.of("target").toAbsolutePath(), "fault-hold-dst-");
            dstState = Files.createTempDirectory(Path.of("target").toAbsolutePath(), "state-dst-");
        }

        /**
         * Starts whichever agent is missing or dead, both at once; the destination refuses device state (agent flag
         * {@code --inject-fault refuse-device-state}) exactly when {@code refusing}.
         */
        void ready(boolean refusing) throws Exception {
            CompletableFuture<AgentProcess> s = null;
            CompletableFuture<AgentProcess> d = null;
            if (dst != null && dstRefuses != refusing) {
                retire(dst);
            }
            if (src == null || !src.isAlive()) {
                Agents.stop(src);
                s = start("fm-src-" + started++, srcHold, "--advertise-pager", "127.0.0.1:" + pager.port());
            }
            if (dst == null || !dst.isAlive()) {
                Agents.stop(dst);
                d = start("fm-dst-" + started++, dstHold, "--advertise-data", "127.0.0.1:" + data.port(),
                        "--inject-fault", refusing ? "refuse-device-state" : "none", "--state-dir", dstState.toString());
                dstRefuses = refusing;
            }
            if (s != null) {
                src = s.get(3, TimeUnit.MINUTES);
                pager.target(src.pagerAddress());
            }
            if (d != null) {
                dst = d.get(3, TimeUnit.MINUTES);
                data.target(dst.dataAddress());
                control.target(dst.controlAddress());
            }
        }

        private CompletableFuture<AgentProcess> start(String name, Path hold, String... more) {
            // Limits well above the default 2: sessions an earlier cell left to time out on a shared destination
            // must not queue the next cell's migration (the matrix is about faults, ConcurrentMigrationTest about limits).
            List<String> args = new ArrayList<>(List.of("--no-warmup", "--peer-timeout", PEER_TIMEOUT,
                    "--fault-hold-dir", hold.toString(), "--max-incoming-migrations", "16",
                    "--max-outgoing-migrations", "16"));
            args.addAll(List.of(more));
            return CompletableFuture.supplyAsync(() -> {
                try {
                    return Agents.start(name, backend, args.toArray(String[]::new));
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            });
        }

        /** Stops an agent a cell left in a state the next cell must not inherit; ready() replaces it. */
        void retire(AgentProcess a) throws Exception {
            Agents.stop(a);
            if (a == src) {
                src = null;
            } else if (a == dst) {
                dst = null;
            }
        }

        @Override
        public void close() throws Exception {
            Agents.stop(src, dst);
            data.close();
            pager.close();
            control.close();
        }
    }

    /** One run on the pool's agents: one guest, one fault in one phase. */
    static final class Cell implements AutoCloseable {
        /** CreateMigration's answer: the migration, or the StatusRuntimeException it failed with. */
        private CompletableFuture<Object> created;
        final Pool pool;
        final Fault fault;
        final Phase phase;
        final Path holdDir;
        final List<TcpProxy> proxies;
        final AgentProcess src;
        final AgentProcess dst;
        final String id;
        final String name;

        Cell(Pool pool, Fault fault, Phase phase) throws Exception {
            this.pool = pool;
            this.fault = fault;
            this.phase = phase;
            this.id = "fm-" + fault.name().toLowerCase().replace('_', '-') + "-" + phase.name().toLowerCase()
                    .replace('_', '-');
            this.name = "migrations/" + id;
            pool.ready(fault == Fault.REFUSE_DEVICE_STATE);
            src = pool.src;
            dst = pool.dst;
            proxies = List.of(pool.data, pool.pager, pool.control);
            holdDir = phase.heldBySource ? pool.srcHold : pool.dstHold;
            if (phase.holdPoint != null) {
                Files.writeString(holdDir.resolve(phase.holdPoint + ".hold"), id);
            }
        }

        Row run(Row expected) throws Exception {
            String vm = Agents.createVm(src, id, 64 * MIB, 16 * MIB, 2 * MIB, false).getName();
            MigrationPolicy.Builder policy = Agents.policy();
            MigrationMode mode = MigrationMode.PRECOPY;
            if (phase == Phase.PRECOPY) {
                policy.setBandwidthLimitBytesPerSecond(4 * MIB); // the first round takes seconds
            } else if (phase == Phase.POSTCOPY) {
                mode = MigrationMode.POSTCOPY;
                policy.setBandwidthLimitBytesPerSecond(2 * MIB).setDataStreams(1); // the push takes seconds
            }
            String to = fault.cuts() ? "127.0.0.1:" + pool.control.port() : dst.controlAddress();
            CreateMigrationRequest create = CreateMigrationRequest.newBuilder().setMigrationId(id)
                    .setMigration(Migration.newBuilder().setVm(vm).setDestinationAddress(to).setMode(mode)
                            .setPolicy(policy)).build();
            // CreateMigration returns after the negotiation, which a hold in NEGOTIATING keeps waiting.
            created = CompletableFuture.supplyAsync(() -> {
                try {
                    return Agents.migrations(src).createMigration(create);
                } catch (StatusRuntimeException e) {
                    return e;
                }
            });
            if (phase != Phase.NEGOTIATING) {
                Object c = created.get(120, TimeUnit.SECONDS); // negotiated: the migration exists on the source
                assertTrue(c instanceof Migration, "CreateMigration succeeds: " + c);
            }
            switch (phase) {
                case PRECOPY -> Agents.watchUntil(src, name, m -> m.getPhase() == Migration.Phase.PRECOPY
                        && m.getProgress().getRound() >= 1);
                case POSTCOPY -> Agents.watchUntil(src, name, m -> m.getPhase() == Migration.Phase.POSTCOPY);
                default -> await("the agent holds the migration at " + phase.holdPoint,
                        () -> Files.exists(holdDir.resolve(phase.holdPoint + ".reached")));
            }
            if (phase.heldBySource) {
                assertEquals(expectedSourcePhase(), Agents.migrations(src).getMigration(
                        GetMigrationRequest.newBuilder().setName(name).build()).getPhase(), "held in " + phase.label);
            }
            inject();
            release();
            created.get(120, TimeUnit.SECONDS);
            if (fault == Fault.CUT_1S && phase == Phase.POSTCOPY) {
                // The cut paused postcopy on both sides; the link is back: the operator resumes it.
                Agents.watchUntil(src, name, m -> m.getPhase() == Migration.Phase.POSTCOPY_PAUSED);
                Agents.migrations(src).resumeMigration(ResumeMigrationRequest.newBuilder().setName(name).build());
            }
            Optional<Migration> s = settle(src);
            Optional<Migration> d = settle(dst);
            Row row = observe(expected, vm, s, d);
            if (fault == Fault.KILL_DESTINATION) {
                // The destination agent comes back: it finds what the killed one left of the migration and says so.
                pool.ready(false);
                boolean reported = Files.readAllLines(pool.dst.log()).stream()
                        .anyMatch(l -> l.contains("left by a previous run") && l.contains(name + " "));
                row = new Row(row.fault(), row.phase(), row.outcome(), row.wrongPages(), row.sees()
                        + (reported ? "; its restart reports the migration it lost" : ""), row.why());
            }
            return row;
        }

        private Migration.Phase expectedSourcePhase() {
            return switch (phase) {
                case STOP_AND_COPY -> Migration.Phase.STOP_AND_COPY;
                case DEVICE_STATE -> Migration.Phase.DEVICE_STATE;
                default -> Migration.Phase.VERIFYING;
            };
        }

        private void inject() throws Exception {
            switch (fault) {
                case KILL_SOURCE -> src.kill();
                case KILL_DESTINATION -> dst.kill();
                case CUT_1S -> {
                    proxies.forEach(TcpProxy::cut);
                    Thread.sleep(1000); // the fault is a one-second outage
                    proxies.forEach(TcpProxy::restore);
                }
                case CUT_FOR_GOOD -> proxies.forEach(TcpProxy::cut);
                case REFUSE_DEVICE_STATE -> { } // the destination agent refuses when the state arrives
                default -> throw new IllegalStateException(fault + " is not injected into a migration");
            }
        }

        private void release() throws IOException {
            if (phase.holdPoint != null) {
                Files.writeString(holdDir.resolve(phase.holdPoint + ".release"), "go");
            }
        }

        /**
         * Waits until the agent's copy of the migration is terminal (or paused in postcopy for good, which only
         * ResumeMigration ends); empty if the agent is dead or never had it.
         */
        private Optional<Migration> settle(AgentProcess a) throws Exception {
            if (!a.isAlive()) {
                return Optional.empty();
            }
            boolean pausedForGood = fault == Fault.CUT_FOR_GOOD && phase == Phase.POSTCOPY;
            Migration[] last = new Migration[1];
            await(a.name() + " settles " + name, () -> {
                try {
                    last[0] = Agents.migrations(a).getMigration(GetMigrationRequest.newBuilder().setName(name).build());
                } catch (StatusRuntimeException e) {
                    if (e.getStatus().getCode() != Status.Code.NOT_FOUND) {
                        throw e;
                    }
                    if (a == src && created != null && created.isDone()
                            && created.getNow(null) instanceof StatusRuntimeException failed) {
                        // A failed CreateMigration keeps no record (migration_service.proto): its answer is what
                        // the caller sees.
                        last[0] = Migration.newBuilder().setName(name).setPhase(Migration.Phase.FAILED)
                                .setError(com.google.rpc.Status.newBuilder().setCode(failed.getStatus().getCode().value())
                                        .setMessage(String.valueOf(failed.getStatus().getDescription()))).build();
                        return true;
                    }
                    // A destination that never got the negotiation has nothing; one that will, soon has.
                    return a == dst && phase != Phase.NEGOTIATING;
                }
                Migration.Phase p = last[0].getPhase();
                return TERMINAL.contains(p) || pausedForGood && p == Migration.Phase.POSTCOPY_PAUSED;
            });
            return Optional.ofNullable(last[0]);
        }

        /** Leaves the pool as the next cell needs it: links restored, holds disarmed, no guest, no open migration. */
        @Override
        public void close() throws Exception {
            proxies.forEach(TcpProxy::restore);
            for (Path dir : List.of(pool.srcHold, pool.dstHold)) {
                for (String f : List.of(".hold", ".reached", ".release")) {
                    for (Phase p : Phase.values()) {
                        if (p.holdPoint != null) {
                            Files.deleteIfExists(dir.resolve(p.holdPoint + f));
                        }
                    }
                }
            }
            for (AgentProcess a : List.of(src, dst)) {
                if (!a.isAlive()) {
                    continue;
                }
                boolean open = Agents.migrations(a).listMigrations(dev.ferry.v1.ListMigrationsRequest.getDefaultInstance())
                        .getMigrationsList().stream().anyMatch(m -> !TERMINAL.contains(m.getPhase()));
                if (open) {
                    pool.retire(a); // a paused migration holds its guest for ever: start afresh
                    continue;
                }
                try {
                    Agents.deleteVms(a);
                } catch (StatusRuntimeException e) {
                    pool.retire(a); // a failed migration still holds its paused copy (undecided): start afresh
                }
            }
        }

        private Row observe(Row expected, String vm, Optional<Migration> s, Optional<Migration> d) {
            return FaultMatrixTest.observe(fault, phase, src, dst, expected, vm, s, d);
        }
    }

    /** The check every run ends with, and the row it observed. */
    static Row observe(Fault fault, Phase phase, AgentProcess src, AgentProcess dst, Row expected, String vm,
            Optional<Migration> s, Optional<Migration> d) {
        {
            boolean pausedThere = d.map(Migration::getPhase).orElse(null) == Migration.Phase.POSTCOPY_PAUSED;
            boolean onSource = runsOn(src, vm);
            // A guest paused in postcopy waits for missing pages, and so would a VM call that reads its memory
            // (GetVm's guest progress on KVM): the destination's migration says where it is instead.
            boolean onDestination = !pausedThere && runsOn(dst, vm);
            assertFalse(onSource && onDestination, "the guest runs on both sides");
            for (AgentProcess a : List.of(src, dst)) {
                if (a.isAlive()) {
                    assertEquals(HealthCheckResponse.ServingStatus.SERVING, HealthGrpc.newBlockingStub(a.channel())
                            .withDeadlineAfter(30, TimeUnit.SECONDS).check(HealthCheckRequest.getDefaultInstance())
                            .getStatus(), a.name() + " answers health");
                }
            }
            for (Optional<Migration> m : List.of(s, d)) {
                // Migration.error is set in FAILED and CANCELLED (a paused postcopy says so by its phase).
                m.filter(x -> x.getPhase() == Migration.Phase.FAILED || x.getPhase() == Migration.Phase.CANCELLED)
                        .ifPresent(x -> assertFalse(
                        x.getError().getMessage().isBlank(), "a clear error on the " + x.getRole() + " in "
                                + x.getPhase() + ": " + x.getError()));
            }
            String outcome;
            String wrong = "—";
            if (onSource || onDestination) {
                AgentProcess there = onSource ? src : dst;
                Agents.assertGuestRunsIntact(there, vm); // 0 wrong pages, or it fails here
                wrong = "0";
                outcome = "guest runs on the " + (onSource ? "source" : "destination");
            } else if (pausedThere) {
                assertEquals(vm, d.get().getDestinationVm(), "the paused guest is still on the destination");
                outcome = "guest paused on the destination until ResumeMigration";
            } else {
                if (dst.isAlive()) {
                    assertFalse(Agents.hasVm(dst, vm), "no half-copied guest is left on the destination");
                }
                outcome = "guest lost";
            }
            String sees = "source: " + side(src, s) + "; destination: " + side(dst, d);
            return new Row(fault.label, phase.label, outcome, wrong, sees, expected.why());
        }
    }

        /** Whether {@code vm} runs on {@code a}, free of any migration. */
        private static boolean runsOn(AgentProcess a, String vm) {
            if (!a.isAlive() || !Agents.hasVm(a, vm)) {
                return false;
            }
            Vm v = Agents.vms(a).getVm(GetVmRequest.newBuilder().setName(vm).build());
            return v.getState() == Vm.State.RUNNING && v.getMigration().isEmpty();
        }

        private static String side(AgentProcess a, Optional<Migration> m) {
            if (!a.isAlive()) {
                return "killed";
            }
            return m.map(x -> x.getPhase().name() + (x.getError().getCode() == 0 ? ""
                    : " " + Status.fromCodeValue(x.getError().getCode()).getCode())).orElse("no migration");
        }

    /**
     * 5 % of packets dropped each way for the whole migration, on a veth link between two network namespaces
     * ({@link dev.ferry.control.link.TwoHostLink}, nftables), each agent inside its namespace on its link address.
     */
    static Row lossyLink(Backend backend, Phase phase, Row expected) throws Exception {
        dev.ferry.control.link.LinkSpec spec = dev.ferry.control.link.LinkSpec.parse("loss 5%");
        dev.ferry.control.link.TwoHostLink.unavailableReason(spec).ifPresent(why -> Assumptions.abort(
                "no lossy link here: " + why));
        String id = "fm-loss-" + phase.name().toLowerCase().replace('_', '-');
        try (dev.ferry.control.link.TwoHostLink link = dev.ferry.control.link.TwoHostLink.create(spec)) {
            CompletableFuture<AgentProcess> a = CompletableFuture.supplyAsync(() -> startIn(link.inA(List.of()),
                    dev.ferry.control.link.TwoHostLink.A_LINK_ADDRESS, id + "-src", backend));
            CompletableFuture<AgentProcess> b = CompletableFuture.supplyAsync(() -> startIn(link.inB(List.of()),
                    dev.ferry.control.link.TwoHostLink.B_LINK_ADDRESS, id + "-dst", backend));
            try (AgentProcess src = a.get(3, TimeUnit.MINUTES); AgentProcess dst = b.get(3, TimeUnit.MINUTES)) {
                String vm = Agents.createVm(src, id, 64 * MIB, 16 * MIB, 2 * MIB, false).getName();
                Migration m = Agents.startMigration(src, dst, id, vm, phase == Phase.POSTCOPY ? MigrationMode.POSTCOPY
                        : MigrationMode.PRECOPY, Agents.policy().build());
                Optional<Migration> s = Optional.of(Agents.watchToEnd(src, m.getName()));
                Optional<Migration> d = Optional.of(Agents.migrations(dst).getMigration(GetMigrationRequest.newBuilder()
                        .setName(m.getName()).build()));
                return observe(Fault.LOSS, phase, src, dst, expected, vm, s, d);
            }
        }
    }

    private static AgentProcess startIn(List<String> wrapper, String host, String name, Backend backend) {
        try {
            return Agents.startIn(wrapper, host, name, backend, "--no-warmup", "--peer-timeout", PEER_TIMEOUT);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /** Polls {@code condition} (a file another process writes, an agent's view) until it holds, at most 2 min. */
    static void await(String what, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(2);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                fail("timed out waiting: " + what);
            }
            Thread.sleep(50);
        }
    }

    /**
     * Disk full while writing a snapshot ({@code ferry vm run --snapshot DIR}, the CLI's own guest) on a 1 MiB
     * tmpfs: the command says so in one line and exits 1, the guest resumes and its self-check finds no wrong
     * page, nothing is left in DIR, and {@code ferry vm restore DIR} refuses it.
     */
    static final class SnapshotDiskFull {
        private final Backend backend;

        SnapshotDiskFull(Backend backend) {
            this.backend = backend;
        }

        Row run(Row expected) throws Exception {
            Assumptions.assumeTrue("root".equals(System.getProperty("user.name")), "mounting a tmpfs needs root");
            Files.createDirectories(Path.of("target"));
            Path mount = Files.createTempDirectory(Path.of("target").toAbsolutePath(), "snapshot-full-");
            exec(List.of("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mount.toString()));
            try {
                Path snap = mount.resolve("snap");
                Result r = ferry("vm", "run", "--backend", backend.cliName(), "--memory", "64m", "--working-set", "16m",
                        "--dirty-rate", "2m", "--seconds", "0.2", "--json", "--snapshot", snap.toString());
                assertEquals(1, r.exit, "vm run fails: " + r.err);
                var json = new com.fasterxml.jackson.databind.ObjectMapper().readTree(r.lastLine());
                String error = json.path("snapshot_error").asText();
                assertTrue(error.contains("No space left on device"), error);
                assertTrue(r.err.contains("snapshot not written"), r.err);
                assertTrue(json.path("guest_running_after_snapshot_error").asBoolean(), "the guest runs on");
                long wrong = json.path("wrong_pages_after_snapshot_error").asLong(-1);
                assertEquals(0, wrong, "the guest's self-check after the failed snapshot");
                try (Stream<Path> left = Files.list(snap)) {
                    assertEquals(List.of(), left.toList(), "nothing partial is left");
                }
                Result restore = ferry("vm", "restore", snap.toString(), "--backend", backend.cliName(), "--seconds",
                        "0.1", "--json");
                assertTrue(restore.exit != 0, "restore refuses the directory");
                assertFalse(restore.err.contains("\tat "), "one line, no stack trace: " + restore.err);
                return new Row(expected.fault(), expected.phase(), "guest keeps running; no partial snapshot left",
                        Long.toString(wrong), "`vm run --snapshot` exits " + r.exit + ": snapshot not written (No space"
                        + " left on device); `vm restore` exits " + restore.exit, expected.why());
            } finally {
                exec(List.of("umount", mount.toString()));
            }
        }

        record Result(int exit, String out, String err) {
            String lastLine() {
                String[] lines = out.strip().split("\n");
                return lines[lines.length - 1];
            }
        }

        /** {@code ferry ARGS} from this test's classpath, as a separate process. */
        private static Result ferry(String... args) throws Exception {
            List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-cp", System.getProperty("surefire.test.class.path", System.getProperty("java.class.path")),
                    "dev.ferry.cli.Main"));
            cmd.addAll(List.of(args));
            Process p = new ProcessBuilder(cmd).start();
            CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> {
                try {
                    return new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            });
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(p.waitFor(3, TimeUnit.MINUTES), "ferry " + String.join(" ", args) + " ends");
            return new Result(p.exitValue(), out, err.get(1, TimeUnit.MINUTES));
        }

        private static void exec(List<String> cmd) throws Exception {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(p.waitFor(1, TimeUnit.MINUTES) && p.exitValue() == 0, String.join(" ", cmd) + ": " + out);
        }
    }
}
