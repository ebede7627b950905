package dev.ferry.control.migration;

import com.google.protobuf.Any;
import com.google.protobuf.Empty;
import dev.ferry.control.grpc.Calls;
import dev.ferry.control.grpc.NativeFailures;
import dev.ferry.control.vm.ManagedVm;
import dev.ferry.control.vm.Pages;
import dev.ferry.control.vm.VmProtos;
import dev.ferry.control.vm.VmRegistry;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.linux.NativeException;
import dev.ferry.linux.ThreadPriority;
import dev.ferry.memory.GuestMemory;
import dev.ferry.vm.Backend;
import dev.ferry.vm.CpuidLeaf;
import dev.ferry.vm.GuestBackend;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.HostCapabilities;
import dev.ferry.vm.IncompatibleShapeException;
import dev.ferry.vm.VmConfig;
import dev.ferry.vm.VmShape;
import dev.ferry.v1.AbortIncomingMigrationRequest;
import dev.ferry.v1.CancelMigrationRequest;
import dev.ferry.v1.CompleteIncomingMigrationRequest;
import dev.ferry.v1.CompleteIncomingMigrationResponse;
import dev.ferry.v1.CompleteIncomingPostcopyRequest;
import dev.ferry.v1.CompleteIncomingPostcopyResponse;
import dev.ferry.v1.CpuidEntry;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.GetMigrationLimitsRequest;
import dev.ferry.v1.GetMigrationRequest;
import dev.ferry.v1.IncompatibilityDetails;
import dev.ferry.v1.ListMigrationsRequest;
import dev.ferry.v1.ListMigrationsResponse;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationConfig;
import dev.ferry.v1.MigrationLimits;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.NegotiateMigrationRequest;
import dev.ferry.v1.NegotiateMigrationResponse;
import dev.ferry.v1.ResumeIncomingMigrationRequest;
import dev.ferry.v1.ResumeIncomingMigrationResponse;
import dev.ferry.v1.ResumeMigrationRequest;
import dev.ferry.v1.SwitchToPostcopyRequest;
import dev.ferry.v1.TransferDeviceStateRequest;
import dev.ferry.v1.CommitIncomingMigrationRequest;
import dev.ferry.v1.VerifyIncomingMigrationRequest;
import dev.ferry.v1.VerifyIncomingMigrationResponse;
import dev.ferry.v1.Vm;
import dev.ferry.v1.WatchMigrationRequest;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;

/** ferry.v1.MigrationService: the gRPC edge over {@link SourceDriver} and {@link DestinationDriver}. */
final class MigrationServiceImpl extends MigrationServiceGrpc.MigrationServiceImplBase {
    static final String PREFIX = "migrations/";
    private static final Duration DEFAULT_WATCH_INTERVAL = Duration.ofMillis(200);
    /** CancelMigration returns once the source VM runs again; this bounds the wait. */
    private static final Duration CANCEL_WAIT = Duration.ofSeconds(30);

    private final MigrationServices m;

    MigrationServiceImpl(MigrationServices m) {
        this.m = m;
    }

    // ------------------------------------------------------------------ caller -> source

    @Override
    public void createMigration(CreateMigrationRequest req, StreamObserver<Migration> out) {
        Calls.unary(out, () -> {
            String asked = MigrationRequests.check(req);
            Migration spec = req.getMigration();
            String id = asked == null ? "mig-" + UUID.randomUUID().toString().substring(0, 8)
                    : asked.substring(PREFIX.length());
            String name = PREFIX + id;
            MigrationMode mode = spec.getMode() == MigrationMode.MIGRATION_MODE_UNSPECIFIED ? MigrationMode.PRECOPY
                    : spec.getMode();
            if (mode != MigrationMode.PRECOPY && mode != MigrationMode.POSTCOPY && mode != MigrationMode.HYBRID
                    && mode != MigrationMode.AUTO) {
                throw Status.INVALID_ARGUMENT.withDescription("unknown migration mode " + spec.getModeValue())
                        .asRuntimeException();
            }
            ConvergencePolicy policy;
            try {
                policy = ConvergencePolicy.of(mode, spec.getPolicy());
            } catch (IllegalArgumentException e) {
                throw Status.INVALID_ARGUMENT.withDescription("policy: " + e.getMessage()).asRuntimeException();
            }
            ManagedVm vm = m.agent.vms().get(spec.getVm());
            GuestBackend backend = m.agent.backends().require(vm.vm().backend());
            if (!MigrationServices.modes(backend).contains(policy.mode())) { // AUTO runs as HYBRID
                throw Status.FAILED_PRECONDITION.withDescription("mode " + mode
                        + " needs userfaultfd, which this agent cannot open; use PRECOPY").asRuntimeException();
            }
            if (vm.state() != Vm.State.RUNNING) {
                throw Status.FAILED_PRECONDITION.withDescription(spec.getVm() + " is " + vm.state()
                        + "; only a RUNNING VM can be migrated").asRuntimeException();
            }
            if (m.outgoing.containsKey(name) || m.incoming.containsKey(name)) {
                throw Status.ALREADY_EXISTS.withDescription(name + " already exists").asRuntimeException();
            }
            if (!vm.hold(name, Vm.State.MIGRATING_OUT)) {
                throw Status.FAILED_PRECONDITION.withDescription(spec.getVm() + " is already held by " + vm.holder())
                        .asRuntimeException();
            }
            MigrationLimiter.Ticket ticket;
            try {
                ticket = m.limiter.outgoing(name); // --when-busy refuse: RESOURCE_EXHAUSTED here
            } catch (RuntimeException e) {
                vm.hold("", Vm.State.RUNNING);
                throw e;
            }
            String destVmId = spec.getDestinationVm().isEmpty() ? spec.getVm().substring(VmRegistry.PREFIX.length())
                    : spec.getDestinationVm().replaceFirst("^" + VmRegistry.PREFIX, "");
            SourceDriver job = new SourceDriver(name, vm, m.agent.vms(), spec.getDestinationAddress(), destVmId,
                    m.agent.controlAddress(), m.agent.pagerAddress(), m.pagers, policy, m.channels,
                    id.startsWith(MigrationServices.WARMUP_ID_PREFIX) ? MigrationMetrics.NONE : m.metrics,
                    id.startsWith(MigrationServices.WARMUP_ID_PREFIX) ? FaultInjection.NONE : m.fault,
                    m.protocolVersion, m.hold, id.startsWith(MigrationServices.WARMUP_ID_PREFIX)
                            ? MigrationTracing.NO_SPAN : m.tracing.startMigration(name), m.switchoverOverhead);
            job.limitedBy(ticket, m.limiter.limits().whenBusy() == MigrationLimiter.WhenBusy.QUEUE);
            m.outgoing.put(name, job);
            Runnable body;
            if (ticket.granted()) {
                try {
                    job.negotiate(); // fails this call, with the destination's mismatch details, when incompatible
                    body = job;
                } catch (SourceDriver.DestinationBusy busy) {
                    job.queuedByDestination(busy); // QUEUED until the destination has room
                    body = () -> job.runQueued(true);
                } catch (RuntimeException e) {
                    job.settleWithoutRunning(); // releases the slot
                    m.outgoing.remove(name, job); // as documented: no resource is kept when CreateMigration fails
                    throw e;
                }
            } else {
                job.queue(); // waits in arrival order; negotiates once it has a slot
                body = () -> job.runQueued(false);
            }
            Thread t = new Thread(body, "migration-" + id);
            t.setDaemon(true);
            t.start();
            return job.snapshot();
        });
    }

    @Override
    public void getMigrationLimits(GetMigrationLimitsRequest req, StreamObserver<MigrationLimits> out) {
        Calls.unary(out, () -> {
            MigrationRequests.check(req);
            return m.limiter.toProto();
        });
    }

    @Override
    public void getMigration(GetMigrationRequest req, StreamObserver<Migration> out) {
        Calls.unary(out, () -> find(MigrationRequests.check(req)));
    }

    private Migration find(String name) {
        SourceDriver o = m.outgoing.get(name);
        if (o != null) {
            return o.snapshot();
        }
        DestinationDriver s = m.incoming.get(name);
        if (s != null) {
            return s.snapshot();
        }
        throw Status.NOT_FOUND.withDescription(name + " not found on this agent").asRuntimeException();
    }

    @Override
    public void listMigrations(ListMigrationsRequest req, StreamObserver<ListMigrationsResponse> out) {
        Calls.unary(out, () -> {
            MigrationRequests.check(req);
            List<Migration> all = m.list();
            int start = Pages.start(req.getPageToken(), all.size());
            int size = Pages.size(req.getPageSize());
            ListMigrationsResponse.Builder b = ListMigrationsResponse.newBuilder()
                    .addAllMigrations(all.subList(start, Math.min(all.size(), start + size)));
            if (start + size < all.size()) {
                b.setNextPageToken(Pages.token(start + size));
            }
            return b.build();
        });
    }

    @Override
    public void cancelMigration(CancelMigrationRequest req, StreamObserver<Migration> out) {
        Calls.unary(out, () -> {
            SourceDriver o = m.outgoing.get(MigrationRequests.check(req));
            if (o == null) {
                if (m.incoming.containsKey(req.getName())) {
                    throw Status.FAILED_PRECONDITION.withDescription(req.getName()
                            + " is incoming here: cancel it on its source agent").asRuntimeException();
                }
                throw Status.NOT_FOUND.withDescription(req.getName() + " not found on this agent").asRuntimeException();
            }
            o.cancel(CANCEL_WAIT);
            return o.snapshot();
        });
    }

    @Override
    public void updateMigration(dev.ferry.v1.UpdateMigrationRequest req, StreamObserver<Migration> out) {
        Calls.unary(out, () -> {
            String name = MigrationRequests.check(req);
            SourceDriver o = m.outgoing.get(name);
            if (o == null) {
                if (m.incoming.containsKey(name)) {
                    throw Status.FAILED_PRECONDITION.withDescription(name
                            + " is incoming here: update it on its source agent").asRuntimeException();
                }
                throw Status.NOT_FOUND.withDescription(name + " not found on this agent").asRuntimeException();
            }
            return o.bandwidthLimit(req.getMigration().getPolicy().getBandwidthLimitBytesPerSecond());
        });
    }

    @Override
    public void watchMigration(WatchMigrationRequest req, StreamObserver<Migration> out) {
        ServerCallStreamObserver<Migration> call = (ServerCallStreamObserver<Migration>) out;
        try {
            Duration interval = MigrationRequests.check(req, DEFAULT_WATCH_INTERVAL);
            SourceDriver o = m.outgoing.get(req.getName());
            if (o == null) {
                find(req.getName()); // NOT_FOUND, or an incoming one: send its one snapshot
                DestinationDriver s = m.incoming.get(req.getName());
                while (!call.isCancelled()) {
                    Migration snap;
                    boolean last;
                    synchronized (s) { // snapshot and end flag together: the final phase is always sent
                        snap = s.snapshot();
                        last = s.isTerminal();
                    }
                    out.onNext(snap);
                    if (last) {
                        break;
                    }
                    Thread.sleep(interval.toMillis()); // polling cadence the caller asked for
                }
                out.onCompleted();
                return;
            }
            long seen = -1;
            while (!call.isCancelled()) {
                SourceDriver.Watched w = o.watched();
                out.onNext(w.migration());
                if (w.last()) {
                    break;
                }
                seen = o.awaitChange(seen, interval);
            }
            out.onCompleted();
        } catch (StatusRuntimeException e) {
            out.onError(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            out.onError(Status.CANCELLED.withDescription("interrupted").asRuntimeException());
        }
    }

    @Override
    public void switchToPostcopy(SwitchToPostcopyRequest req, StreamObserver<Migration> out) {
        Calls.unary(out, () -> {
            SourceDriver o = m.outgoing.get(MigrationRequests.check(req));
            if (o == null) {
                find(req.getName()); // NOT_FOUND, or incoming here
                throw Status.FAILED_PRECONDITION.withDescription(req.getName()
                        + " is incoming here: switch it on its source agent").asRuntimeException();
            }
            o.requestSwitchToPostcopy();
            return o.snapshot();
        });
    }

    @Override
    public void resumeMigration(ResumeMigrationRequest req, StreamObserver<Migration> out) {
        Calls.unary(out, () -> {
            SourceDriver o = m.outgoing.get(MigrationRequests.check(req));
            if (o == null) {
                find(req.getName());
                throw Status.FAILED_PRECONDITION.withDescription(req.getName()
                        + " is incoming here: resume it on its source agent").asRuntimeException();
            }
            o.resumePostcopy(req.getDestinationAddress());
            return o.snapshot();
        });
    }

    // ------------------------------------------------------------------ source -> destination

    @Override
    public void negotiateMigration(NegotiateMigrationRequest req, StreamObserver<NegotiateMigrationResponse> out) {
        Calls.unary(out, () -> {
            MigrationRequests.check(req);
            m.hold.reached(FaultHold.Point.NEGOTIATE, req.getMigration());
            if (m.incoming.containsKey(req.getMigration()) || m.outgoing.containsKey(req.getMigration())) {
                throw Status.ALREADY_EXISTS.withDescription(req.getMigration() + " already exists on this agent")
                        .asRuntimeException();
            }
            String vmName = VmRegistry.nameOf(req.getDestinationVmId().isEmpty()
                    ? req.getSourceVm().replaceFirst("^" + VmRegistry.PREFIX, "") : req.getDestinationVmId());
            if (m.agent.vms().exists(vmName)) {
                throw Status.ALREADY_EXISTS.withDescription(vmName + " already exists on the destination").asRuntimeException();
            }
            // --max-incoming-migrations: RESOURCE_EXHAUSTED before anything is allocated; held until the session ends.
            MigrationLimiter.IncomingSlot slot = m.limiter.incoming(req.getMigration());
            try {
                return negotiateIncoming(req, vmName, slot);
            } finally {
                slot.releaseUnlessHeld();
            }
        });
    }

    private NegotiateMigrationResponse negotiateIncoming(NegotiateMigrationRequest req, String vmName,
            MigrationLimiter.IncomingSlot slot) {
        {
            Backend kind = VmProtos.fromProto(req.getProposed().getBackend());
            GuestBackend backend = m.agent.backends().get(kind).orElse(null);
            // Without that backend, the rest is judged against this agent's own, so every mismatch is listed at once.
            GuestBackend judge = backend != null ? backend : m.agent.backends().preferred();
            HostCapabilities host = judge.capabilities();
            Compatibility.Result r = Compatibility.check(req.getProposed(), new Compatibility.Local(judge.kind(),
                    host.cpuid(), judge.stateSchemas(), MigrationServices.modes(judge), host.tsc()));
            long memory = req.getProposed().getMemoryRegionsList().stream().mapToLong(x -> x.getSizeBytes()).sum();
            VmConfig config = null;
            List<dev.ferry.v1.Mismatch> mismatches = new ArrayList<>(r.mismatches());
            int peer = ProtocolVersion.ofWire(req.hasProtocolVersion(), req.getProtocolVersion());
            ProtocolVersion.refusal(m.protocolVersion, peer).ifPresent(why -> mismatches.add(0,
                    Compatibility.mismatch("protocol_version", peer, m.protocolVersion, why)));
            // Protocol 1 has no verification after the resume: the digest is compared in CompleteIncomingMigration.
            MigrationConfig accepted = ProtocolVersion.verifiesAfterResume(ProtocolVersion.common(m.protocolVersion, peer))
                    ? r.accepted() : withoutFeature(r.accepted(), MigrationConfig.Feature.MEMORY_DIGEST);
            if (backend == null) {
                mismatches.add(0, Compatibility.mismatch("backend", kind.cliName(),
                        m.agent.backends().offered().stream().map(Backend::cliName).toList(),
                        "this agent cannot run " + kind.cliName() + " guests, and a guest cannot change backends"));
            }
            if (mismatches.isEmpty()) {
                try {
                    WorkloadSpec w = VmProtos.fromProto(req.getWorkload(), 0);
                    config = new VmConfig(req.getProposed().getVcpuCount(), memory,
                            req.getProposed().getMemoryRegionsCount(), w);
                    if (!config.memoryLayout().equals(layoutOf(req.getProposed()))) {
                        mismatches.add(Compatibility.mismatch("memory_regions", "uneven slots", "equal slots",
                                "this agent builds memory as equal slots"));
                    }
                } catch (IllegalArgumentException | StatusRuntimeException e) {
                    mismatches.add(Compatibility.mismatch("workload", req.getWorkload().toString().replace('\n', ' '), "",
                            e.getMessage()));
                }
            }
            if (!mismatches.isEmpty()) {
                throw incompatible(mismatches);
            }
            ManagedVm managed;
            try (var held = m.agent.vms().admit(vmName, memory)) { // RESOURCE_EXHAUSTED before allocating
                GuestVm vm;
                try {
                    vm = backend.createIncoming(new VmShape(config, cpuidOf(req.getProposed().getCpuidEntriesList()),
                            req.getProposed().getTscKhz()), line -> { });
                } catch (IncompatibleShapeException e) { // only a refused TSC scaling is a tsc_khz mismatch
                    throw incompatible(List.of(Compatibility.mismatch(e.field(), req.getProposed().getTscKhz(),
                            host.tsc().khz(), e.getMessage())));
                } catch (NativeException e) {
                    throw NativeFailures.status("creating the incoming VM " + vmName, e);
                }
                managed = m.agent.vms().add(vmName, vm, Vm.State.MIGRATING_IN, req.getVmLabelsMap());
            }
            managed.hold(req.getMigration(), Vm.State.MIGRATING_IN);
            String token = SessionTokens.newToken();
            DestinationDriver s = new DestinationDriver(req.getMigration(), token, req.getSourceAddress(),
                    req.getPostcopyPagerAddress(), m.channels, m.agent.vms(), managed,
                    new DestinationStateMachine(accepted, m.peerTimeout, InstantSource.system()),
                    req.getMigration().contains(MigrationServices.WARMUP_ID_PREFIX) ? FaultInjection.NONE : m.fault);
            if (!req.getMigration().contains(MigrationServices.WARMUP_ID_PREFIX)) {
                s.reportTo(m.metrics);
            }
            if (accepted.getMode() == MigrationMode.POSTCOPY || accepted.getMode() == MigrationMode.HYBRID) {
                try {
                    s.armEarly();
                } catch (RuntimeException e) {
                    m.agent.vms().remove(vmName);
                    throw Status.INTERNAL.withDescription("cannot arm postcopy here: " + e.getMessage()).asRuntimeException();
                }
            }
            slot.holdWhile(() -> !s.isTerminal());
            m.addIncoming(s);
            NegotiateMigrationResponse.Builder resp = NegotiateMigrationResponse.newBuilder().setDestinationVm(vmName)
                    .setAccepted(accepted).addDataPlaneAddresses(m.agent.dataAddress()).setSessionToken(token);
            if (m.protocolVersion > 1) { // a version-1 agent did not know the field
                resp.setProtocolVersion(m.protocolVersion);
            }
            return resp.build();
        }
    }

    private static MigrationConfig withoutFeature(MigrationConfig c, MigrationConfig.Feature f) {
        MigrationConfig.Builder b = c.toBuilder().clearFeatures();
        c.getFeaturesList().stream().filter(x -> x != f).forEach(b::addFeatures);
        return b.build();
    }

    private static List<GuestMemory.RegionLayout> layoutOf(dev.ferry.v1.MigrationConfig c) {
        List<GuestMemory.RegionLayout> l = new ArrayList<>();
        for (dev.ferry.v1.MemoryRegion r : c.getMemoryRegionsList()) {
            l.add(new GuestMemory.RegionLayout(r.getSlot(), r.getGuestPhysicalAddress(), r.getSizeBytes()));
        }
        return l;
    }

    private static List<CpuidLeaf> cpuidOf(List<CpuidEntry> entries) {
        List<CpuidLeaf> out = new ArrayList<>();
        for (CpuidEntry e : entries) {
            out.add(new CpuidLeaf(e.getFunction(), e.getIndex(), e.getFlags(), e.getEax(), e.getEbx(), e.getEcx(),
                    e.getEdx()));
        }
        return out;
    }

    private static StatusRuntimeException incompatible(List<dev.ferry.v1.Mismatch> mismatches) {
        StringBuilder msg = new StringBuilder("incompatible migration: ");
        for (int i = 0; i < mismatches.size(); i++) {
            var x = mismatches.get(i);
            msg.append(i == 0 ? "" : "; ").append(x.getField()).append(" (source ").append(x.getSourceValue())
                    .append(", destination ").append(x.getDestinationValue()).append("): ").append(x.getReason());
        }
        com.google.rpc.Status st = com.google.rpc.Status.newBuilder().setCode(Status.Code.FAILED_PRECONDITION.value())
                .setMessage(msg.toString())
                .addDetails(Any.pack(IncompatibilityDetails.newBuilder().addAllMismatches(mismatches).build())).build();
        return StatusProto.toStatusRuntimeException(st);
    }

    /**
     * The incoming migration {@code name}, once the call's session token matches its own: an unknown
     * name and a wrong token get the same UNAUTHENTICATED, before anything else is looked at.
     */
    private DestinationDriver session(String name) {
        DestinationDriver s = m.incoming.get(name);
        SessionTokens.require(s == null ? null : s.token);
        return s;
    }

    @Override
    public void transferDeviceState(TransferDeviceStateRequest req, StreamObserver<Empty> out) {
        try (ThreadPriority.Raised downtime = ThreadPriority.raise()) { // the source VM is paused
            Calls.unary(out, () -> {
                MigrationRequests.check(req);
                session(req.getMigration()).transferDeviceState(req);
                return Empty.getDefaultInstance();
            });
        }
    }

    @Override
    public void completeIncomingMigration(CompleteIncomingMigrationRequest req,
            StreamObserver<CompleteIncomingMigrationResponse> out) {
        DestinationDriver[] answered = new DestinationDriver[1];
        try (ThreadPriority.Raised downtime = ThreadPriority.raise()) { // the source VM is paused
            Calls.unary(out, () -> {
                MigrationRequests.check(req);
                DestinationDriver d = session(req.getMigration());
                CompleteIncomingMigrationResponse r = d.complete(req);
                answered[0] = d;
                return r;
            });
        }
        if (answered[0] != null) {
            answered[0].logCompleted();
        }
    }

    @Override
    public void completeIncomingPostcopy(CompleteIncomingPostcopyRequest req,
            StreamObserver<CompleteIncomingPostcopyResponse> out) {
        Calls.unary(out, () -> {
            MigrationRequests.check(req);
            return session(req.getMigration()).completePostcopy(req);
        });
    }

    @Override
    public void resumeIncomingMigration(ResumeIncomingMigrationRequest req,
            StreamObserver<ResumeIncomingMigrationResponse> out) {
        Calls.unary(out, () -> {
            MigrationRequests.check(req);
            return ResumeIncomingMigrationResponse.newBuilder()
                    .addAllMissingPages(session(req.getMigration()).resume(req.getPostcopyPagerAddress()))
                    .addDataPlaneAddresses(m.agent.dataAddress()).build();
        });
    }

    @Override
    public void verifyIncomingMigration(VerifyIncomingMigrationRequest req,
            StreamObserver<VerifyIncomingMigrationResponse> out) {
        Calls.unary(out, () -> {
            MigrationRequests.check(req);
            return session(req.getMigration()).verify();
        });
    }

    @Override
    public void commitIncomingMigration(CommitIncomingMigrationRequest req, StreamObserver<Empty> out) {
        Calls.unary(out, () -> {
            MigrationRequests.check(req);
            session(req.getMigration()).commit();
            return Empty.getDefaultInstance();
        });
    }

    @Override
    public void abortIncomingMigration(AbortIncomingMigrationRequest req, StreamObserver<Empty> out) {
        Calls.unary(out, () -> {
            MigrationRequests.check(req);
            DestinationDriver s = session(req.getMigration());
            s.abort(MigrationRequests.reason(req));
            return Empty.getDefaultInstance();
        });
    }
}
