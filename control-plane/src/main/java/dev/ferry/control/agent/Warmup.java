package dev.ferry.control.agent;

import dev.ferry.control.migration.MigrationServices;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateCodec;
import dev.ferry.vm.GuestBackend;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.VmConfig;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.DeleteVmRequest;
import dev.ferry.v1.GetMigrationRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import java.util.ArrayList;
import java.util.List;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WatchMigrationRequest;
import dev.ferry.v1.WorkloadSpec;
import io.grpc.ManagedChannel;
import java.net.InetSocketAddress;
import java.util.Iterator;
import java.util.concurrent.TimeUnit;

/**
 * Warms a fresh agent JVM before it reports ready: a small VM migrates from this agent to a
 * throw-away in-process peer and back, over loopback, through every path a real migration takes
 * (negotiation, page streams, device state, switchover, restore). Without it the first real
 * migration pays for class loading and interpreted code inside its downtime: measured here as
 * ~270 ms for an idle guest whose final round had 2 pages.
 */
public final class Warmup {
    private static final System.Logger LOG = System.getLogger(Warmup.class.getName());
    private static final int ROUND_TRIPS = Integer.getInteger("ferry.warmup.roundTrips", 2);
    private static final int STATE_ROUNDS = Integer.getInteger("ferry.warmup.stateRounds", 400);
    private static final long WORKING_SET = Long.getLong("ferry.warmup.workingSetMiB", 32) << 20;
    private static final int LEARNED_SWITCHOVERS = Integer.getInteger("ferry.warmup.learnedSwitchovers", 3);

    private Warmup() {}

    /** Runs the warm-up against {@code agent}; failures are logged, never fatal. */
    public static void run(Agent agent) {
        long t0 = System.nanoTime();
        GuestBackend backend = agent.backends().preferred();
        // The peer listens like the agent, with its certificate: the agent-to-agent calls, pages and
        // faults go over the same TLS as a real migration. The public calls that drive it stay in-process:
        // an agent's certificate may not make them.
        try (Agent peer = Agent.start(agent.name() + "-warmup-peer", agent.security(), new InetSocketAddress("127.0.0.1", 0),
                new InetSocketAddress("127.0.0.1", 0), line -> { }, agent.backends(), MigrationServices::new)) {
            ManagedChannel a = agent.localControlChannel();
            ManagedChannel b = peer.localControlChannel();
            try {
                VmServiceGrpc.newBlockingStub(a).withDeadlineAfter(60, TimeUnit.SECONDS).createVm(CreateVmRequest
                        .newBuilder().setVmId("ferry-warmup").setVm(Vm.newBuilder().setVcpuCount(1).setMemoryBytes(2 * WORKING_SET)
                                .setBackend(dev.ferry.control.vm.VmProtos.toProto(backend.kind()))
                                .setWorkload(WorkloadSpec.newBuilder().setWorkingSetBytes(WORKING_SET)
                                        .setDirtyRateBytesPerSecond(WORKING_SET)))
                        .build());
                ManagedChannel from = a;
                String fromAddr = agent.controlAddress();
                String toAddr = peer.controlAddress();
                // Every mode this agent offers, so none pays for cold code in its first real run.
                List<MigrationMode> modes = new ArrayList<>(MigrationServices.modes(backend));
                modes.sort(null);
                int n = 2 * Math.max(ROUND_TRIPS, (modes.size() + 1) / 2);
                // Then precopy only, ending with LEARNED_SWITCHOVERS from this agent: its first switchover ran cold
                // code, and the planner learns the switchover's cost from the median of the warm ones
                // (SwitchoverOverhead); one sample, taken while the JIT and the peer agent were still busy, came out
                // 6-14 ms where the demo's switchovers then cost 5-6 ms.
                int last = n + 2 * (Math.max(1, LEARNED_SWITCHOVERS) - 1);
                for (int i = 0; i <= last; i++) {
                    migrate(from, toAddr, MigrationServices.WARMUP_ID_PREFIX + i,
                            i >= n ? MigrationMode.PRECOPY : modes.get(i % modes.size()));
                    from = from == a ? b : a;
                    String t = fromAddr;
                    fromAddr = toAddr;
                    toAddr = t;
                }
                VmServiceGrpc.newBlockingStub(from).withDeadlineAfter(60, TimeUnit.SECONDS)
                        .deleteVm(DeleteVmRequest.newBuilder().setName("vms/ferry-warmup").build());
            } finally {
                a.shutdownNow();
                b.shutdownNow();
            }
            warmDeviceState(backend);
            LOG.log(System.Logger.Level.INFO, "warm-up done in {0} ms", (System.nanoTime() - t0) / 1_000_000);
        } catch (Exception | Error e) {
            LOG.log(System.Logger.Level.WARNING, "warm-up failed (the agent works, its first migration will be slower)", e);
        }
    }

    /**
     * Device state is saved and restored inside every switchover's downtime, once per migration: too
     * rarely for the JIT. Interpreted, the save took 2-4 ms of CPU inside the demo's postcopy downtime;
     * compiled, about 1 ms. A few hundred rounds of a paused VM get that code compiled, each the whole way a
     * switchover takes it: without the encoding and decoding, the sections' parsers were still being compiled
     * inside the demo's downtime (LogCompilation: ClockState's parser, 1 ms, between the source's last pages
     * and the destination's resume).
     */
    private static void warmDeviceState(GuestBackend backend) throws Exception {
        VmConfig config = new VmConfig(1, 8L << 20, 1, dev.ferry.guest.WorkloadSpec.of(1L << 20, 0, false));
        try (GuestVm vm = backend.create(config, line -> { })) {
            vm.start();
            vm.pause();
            for (int i = 0; i < STATE_ROUNDS; i++) {
                SectionSet arrived = StateCodec.decode(StateCodec.encode(vm.saveState()));
                vm.validateState(arrived);
                vm.restoreState(arrived);
            }
        }
    }

    private static void migrate(ManagedChannel from, String to, String id, MigrationMode mode) {
        var stub = MigrationServiceGrpc.newBlockingStub(from).withDeadlineAfter(60, TimeUnit.SECONDS);
        Migration.Builder spec = Migration.newBuilder().setVm("vms/ferry-warmup").setDestinationAddress(to).setMode(mode);
        if (mode == MigrationMode.HYBRID) {
            // A downtime no precopy can meet: the warm-up takes hybrid's postcopy switchover, not its precopy ending.
            spec.setPolicy(MigrationPolicy.newBuilder().setMaxRounds(2)
                    .setMaxDowntime(com.google.protobuf.Duration.newBuilder().setNanos(1000)));
        }
        Migration m = stub.createMigration(CreateMigrationRequest.newBuilder().setMigrationId(id).setMigration(spec)
                .build());
        Iterator<Migration> it = stub.watchMigration(WatchMigrationRequest.newBuilder().setName(m.getName()).build());
        while (it.hasNext()) {
            it.next();
        }
        Migration end = stub.getMigration(GetMigrationRequest.newBuilder().setName(m.getName()).build());
        if (end.getPhase() != Migration.Phase.COMPLETED) {
            throw new IllegalStateException("warm-up migration ended " + end.getPhase() + ": " + end.getError().getMessage());
        }
    }
}
