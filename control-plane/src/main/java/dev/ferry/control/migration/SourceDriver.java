package dev.ferry.control.migration;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import dev.ferry.control.vm.ManagedVm;
import dev.ferry.control.vm.VmProtos;
import dev.ferry.control.vm.VmRegistry;
import dev.ferry.dataplane.BandwidthLimiter;
import dev.ferry.dataplane.PageCompression;
import dev.ferry.dataplane.PageSender;
import dev.ferry.dataplane.PageTransferException;
import dev.ferry.dataplane.postcopy.MemoryPageSource;
import dev.ferry.dataplane.postcopy.PageSource;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.DirtyTracker;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.PageHashes;
import dev.ferry.linux.ThreadPriority;
import dev.ferry.vm.Backend;
import dev.ferry.vm.CpuidLeaf;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.VmShape;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateCodec;
import dev.ferry.v1.AbortIncomingMigrationRequest;
import dev.ferry.v1.CompleteIncomingMigrationRequest;
import dev.ferry.v1.CompleteIncomingMigrationResponse;
import dev.ferry.v1.CpuidEntry;
import dev.ferry.v1.DowntimeBreakdown;
import dev.ferry.v1.MemoryDigest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationConfig;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.NegotiateMigrationRequest;
import dev.ferry.v1.NegotiateMigrationResponse;
import dev.ferry.v1.StateSectionVersion;
import dev.ferry.v1.TransferDeviceStateRequest;
import dev.ferry.v1.Vm;
import io.grpc.Channel;
import io.grpc.ClientInterceptors;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.time.InstantSource;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The source's side of one migration: negotiation, precopy rounds, stop-and-copy, device state and
 * switchover, driving {@link SourceStateMachine} with what actually happened. Runs on its own thread;
 * any failure or cancel before the destination resumed leaves the source VM running as it was.
 */
final class SourceDriver implements Runnable {
    private static final System.Logger LOG = System.getLogger(SourceDriver.class.getName());
    private static final long CALL_DEADLINE_SECONDS = 60;
    private static final int SWITCHOVER_ATTEMPTS = 3;
    private static final long PAGE_BYTES = dev.ferry.memory.GuestMemory.PAGE_SIZE;

    final String name;
    private volatile String destination; // control-plane address; ResumeMigration may move it
    private final MigrationMetrics metrics;
    private boolean counted; // guarded by this: the end went into the metrics
    private final ManagedVm vm;
    private final VmRegistry vms;
    private final Channels channels;
    private final String sourceAddress;
    private final String destinationVmId;
    private final SourceStateMachine machine; // guarded by this
    private volatile boolean cancelRequested;
    private String token;
    private String destinationVm = "";
    private MigrationConfig accepted;
    private long version; // guarded by this: bumped on every change, for watchers
    private boolean settled; // guarded by this: terminal AND the VM is where the outcome says (cleanup done)
    private volatile boolean paused; // the source vCPUs are stopped by this migration
    private io.grpc.Context.CancellableContext inFlight; // guarded by this: a control call cancel may interrupt
    // Postcopy, kept for recovery after a cut link: the source's page hashes, fault hint and pager session.
    private volatile PageHashes postcopyHashes;
    private final java.util.concurrent.atomic.AtomicLong lastFault = new java.util.concurrent.atomic.AtomicLong(-1);
    private volatile MemoryPageSource postcopySource;
    private boolean resuming; // guarded by this
    private DirtyBitmap pushed; // postcopy: pages the push has sent (and hashed) so far
    private volatile PostcopyPush activePush; // postcopy: the push running now, told of the pages the pager serves
    private final String pagerAddress;
    // The source VM, taken out of the registry once the destination keeps the guest: closed (its memory unmapped,
    // tens of milliseconds for a large guest) after the migration shows its end, not before.
    private final java.util.concurrent.atomic.AtomicReference<Runnable> toClose = new java.util.concurrent.atomic.AtomicReference<>();
    private final java.util.Map<String, PageSource> pagers;
    private final FaultInjection fault;
    // Concurrency limits (MigrationLimiter): the slot this migration holds or waits for, released once it settles.
    private MigrationLimiter.Ticket ticket; // guarded by this
    private boolean queueWhenDestinationBusy; // guarded by this: --when-busy queue
    private String destinationBusy = ""; // guarded by this: why QUEUED after the destination refused at its limit
    private static final long BUSY_RETRY_FIRST_MS = 200;
    private static final long BUSY_RETRY_MAX_MS = 5000;
    private final FaultHold hold; // tests only: where this migration waits for a fault to be injected
    private final MigrationTracing.Span trace; // the migration's root span: ended once it settles, like the metrics
    private volatile long dirtyRate; // bytes/s the guest dirtied during the latest precopy round, for the metrics
    private final SwitchoverOverhead switchoverOverhead; // the agent's: learned from each precopy switchover
    private final java.time.Duration overheadEstimate; // what the planner assumes for this migration
    private final int overheadSamples;

    SourceDriver(String name, ManagedVm vm, VmRegistry vms, String destination, String destinationVmId,
            String sourceAddress, String pagerAddress, java.util.Map<String, PageSource> pagers,
            ConvergencePolicy policy, Channels channels, MigrationMetrics metrics, FaultInjection fault,
            int protocolVersion, FaultHold hold, MigrationTracing.Span trace, SwitchoverOverhead switchoverOverhead) {
        this.trace = trace.set("ferry.role", "source").set("ferry.vm", vm.name()).set("ferry.destination", destination);
        this.protocolVersion = protocolVersion;
        this.hold = hold;
        this.name = name;
        this.fault = fault;
        this.metrics = metrics;
        this.pagerAddress = pagerAddress;
        this.pagers = pagers;
        this.vm = vm;
        this.vms = vms;
        this.destination = destination;
        this.destinationVmId = destinationVmId;
        this.sourceAddress = sourceAddress;
        this.channels = channels;
        this.switchoverOverhead = switchoverOverhead;
        this.overheadSamples = switchoverOverhead.samples();
        this.overheadEstimate = switchoverOverhead.estimate();
        this.machine = new SourceStateMachine(policy, PrecopyPlanner.Tuning.DEFAULT.withDeviceStateOverhead(overheadEstimate),
                InstantSource.system());
    }

    private MigrationServiceGrpc.MigrationServiceBlockingStub control() {
        Channel ch = channels.get(destination);
        if (token != null) {
            ch = ClientInterceptors.intercept(ch, SessionTokens.attach(token));
        }
        return MigrationServiceGrpc.newBlockingStub(ch).withDeadlineAfter(CALL_DEADLINE_SECONDS, TimeUnit.SECONDS);
    }

    private final int protocolVersion; // the version this agent speaks

    /**
     * The outgoing slot this migration holds or waits for (released when it settles), and whether a destination's
     * refusal at its incoming limit puts it back in QUEUED instead of failing it.
     */
    synchronized void limitedBy(MigrationLimiter.Ticket ticket, boolean queueWhenDestinationBusy) {
        this.ticket = ticket;
        this.queueWhenDestinationBusy = queueWhenDestinationBusy;
    }

    /** NegotiateMigration was refused at the destination's incoming limit and this migration queues instead. */
    static final class DestinationBusy extends RuntimeException {
        private static final long serialVersionUID = 1L;

        DestinationBusy(StatusRuntimeException cause) {
            super(cause.getStatus().getDescription(), cause, false, false);
        }
    }

    /** No slot yet: the migration waits in QUEUED (its thread runs {@link #runQueued}). */
    synchronized void queue() {
        machine.queued(ticket.waitingFor());
        changed();
    }

    /**
     * Thread body of a migration that did not start at once: waits for its outgoing slot (or, after
     * {@code busy}, for the destination), negotiates, then runs. A cancel while queued ends it here.
     */
    void runQueued(boolean destinationRefused) {
        try {
            if (destinationRefused) {
                awaitRetry();
            } else {
                if (!ticket.awaitGranted()) {
                    throw new CancelledException(); // withdrawn by cancel
                }
                synchronized (this) {
                    checkCancelled();
                    machine.dequeued();
                    changed();
                }
            }
            negotiateWhileDestinationBusy();
        } catch (InterruptedException e) {
            endUnstarted(Status.CANCELLED.withDescription("interrupted while queued").asRuntimeException());
            return;
        } catch (RuntimeException e) {
            endUnstarted(e);
            return;
        }
        run();
    }

    /** Negotiates; while the destination refuses at its incoming limit (and we queue), waits in QUEUED and asks again. */
    private void negotiateWhileDestinationBusy() throws InterruptedException {
        while (true) {
            try {
                negotiate();
                return;
            } catch (DestinationBusy b) {
                queuedByDestination(b);
                awaitRetry();
            }
        }
    }

    private long busyRetryMs = BUSY_RETRY_FIRST_MS; // guarded by this

    /** The destination refused at its incoming limit: QUEUED, to ask again after a back-off ({@link #awaitRetry}). */
    synchronized void queuedByDestination(DestinationBusy b) {
        destinationBusy = "the destination " + destination + " refused at its incoming limit (" + b.getMessage()
                + "); asking again in " + busyRetryMs + " ms";
        machine.queued(destinationBusy);
        changed();
    }

    /** QUEUED until the back-off has passed (or cancel); then NEGOTIATING again. */
    private void awaitRetry() throws InterruptedException {
        synchronized (this) {
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(busyRetryMs);
            long left;
            while (!cancelRequested && (left = deadline - System.nanoTime()) > 0) {
                TimeUnit.NANOSECONDS.timedWait(this, left); // cancel() notifies through changed()
            }
            checkCancelled();
            destinationBusy = "";
            machine.dequeued();
            changed();
            busyRetryMs = Math.min(busyRetryMs * 2, BUSY_RETRY_MAX_MS);
        }
    }

    /** A migration that never started its transfer ends: FAILED (or CANCELLED), the VM runs on as before. */
    private void endUnstarted(RuntimeException e) {
        synchronized (this) {
            if (!machine.isTerminal()) {
                machine.failed(codeOf(e), describe(e));
            }
        }
        vm.hold("", Vm.State.RUNNING);
        settleWithoutRunning();
    }

    /** NegotiateMigration with the destination; on refusal the migration is FAILED and the status rethrown. */
    void negotiate() {
        GuestVm v = vm.vm();
        VmShape shape = v.shape();
        MigrationConfig.Builder proposed = MigrationConfig.newBuilder().setVcpuCount(shape.vcpus())
                .setTscKhz(shape.tscKhz()).setPageSizeBytes(4096).setMode(machine.mode())
                .setBackend(VmProtos.toProto(v.backend()))
                .setDataStreamCount(machine.policy().dataStreams())
                .addFeatures(MigrationConfig.Feature.ZERO_PAGE_ELISION)
                .addFeatures(MigrationConfig.Feature.DEVICE_STATE_AT_SWITCHOVER);
        if (machine.policy().verifyMemory() && ProtocolVersion.verifiesAfterResume(protocolVersion)) {
            proposed.addFeatures(MigrationConfig.Feature.MEMORY_DIGEST);
        }
        if (v.backend() == Backend.KVM) {
            proposed.addFeatures(MigrationConfig.Feature.DIRTY_LOG_MANUAL_PROTECT); // how this source tracks pages
        }
        if (machine.policy().pageCompression() != MigrationPolicy.PageCompression.NONE) {
            proposed.addFeatures(MigrationConfig.Feature.LZ4_PAGE_COMPRESSION);
        }
        if (machine.mode() != dev.ferry.v1.MigrationMode.PRECOPY) {
            proposed.addFeatures(MigrationConfig.Feature.POSTCOPY);
        }
        for (MemoryRegion r : v.memory().regions()) {
            proposed.addMemoryRegions(dev.ferry.v1.MemoryRegion.newBuilder().setGuestPhysicalAddress(r.guestPhysAddr())
                    .setSizeBytes(r.size()).setSlot(r.slot()).setPageSizeBytes(4096));
        }
        for (CpuidLeaf e : shape.cpuid()) {
            proposed.addCpuidEntries(CpuidEntry.newBuilder().setFunction(e.function()).setIndex(e.index())
                    .setFlags(e.flags()).setEax(e.eax()).setEbx(e.ebx()).setEcx(e.ecx()).setEdx(e.edx()));
        }
        for (SectionSchema<?> s : v.stateSchemas()) {
            proposed.addStateSections(StateSectionVersion.newBuilder().setName(s.name()).setVersion(s.version())
                    .setMinReaderVersion(s.minReaderVersion()).setRequired(s.required()));
        }
        NegotiateMigrationRequest.Builder ask = NegotiateMigrationRequest.newBuilder().setMigration(name)
                .setSourceVm(vm.name()).setDestinationVmId(destinationVmId).setSourceAddress(sourceAddress)
                .setProposed(proposed).setWorkload(VmProtos.toProto(shape.config().workload()))
                .setPostcopyPagerAddress(pagerAddress).putAllVmLabels(vm.labels());
        if (protocolVersion > 1) { // a version-1 agent did not know the field
            ask.setProtocolVersion(protocolVersion);
        }
        NegotiateMigrationRequest req = ask.build();
        channels.fresh(destination);
        NegotiateMigrationResponse resp;
        MigrationTracing.Span span = trace.child("ferry.negotiation").set("ferry.mode", machine.mode().name());
        try (MigrationTracing.Scope in = span.enter()) {
            resp = cancellable(() -> control().negotiateMigration(req));
        } catch (StatusRuntimeException e) {
            span.failed(e.getStatus().getCode().name());
            synchronized (this) {
                if (queueWhenDestinationBusy && !cancelRequested && MigrationLimiter.isIncomingLimit(e)) {
                    throw new DestinationBusy(e); // still NEGOTIATING: the caller queues it
                }
            }
            fail(e.getStatus().getCode(), "negotiation with " + destination + " failed: " + e.getStatus().getCode()
                    + ": " + e.getStatus().getDescription());
            throw e;
        } finally {
            span.end();
        }
        int peer = ProtocolVersion.ofWire(resp.hasProtocolVersion(), resp.getProtocolVersion());
        // A version-1 agent never read the field: it speaks 1 whatever the destination says.
        var refusal = protocolVersion > 1 ? ProtocolVersion.refusal(protocolVersion, peer)
                : java.util.Optional.<String>empty();
        if (refusal.isPresent()) {
            token = resp.getSessionToken();
            abortDestination("source refuses the destination's " + refusal.get());
            fail(Status.Code.FAILED_PRECONDITION, "the destination's " + refusal.get());
            throw incompatibleVersion(peer, "the destination's " + refusal.get());
        }
        synchronized (this) {
            token = resp.getSessionToken();
            destinationVm = resp.getDestinationVm();
            accepted = resp.getAccepted();
            try {
                if (machine.mode() != dev.ferry.v1.MigrationMode.POSTCOPY) {
                    machine.negotiated(accepted); // POSTCOPY: in runPostcopy, right when the vCPUs stop
                }
            } catch (RuntimeException e) {
                abortDestination("source refused the accepted configuration: " + e.getMessage());
                fail(Status.Code.FAILED_PRECONDITION, "the destination's accepted configuration is unusable: "
                        + e.getMessage());
                throw Status.FAILED_PRECONDITION.withDescription(e.getMessage()).asRuntimeException();
            }
            if (!ProtocolVersion.verifiesAfterResume(ProtocolVersion.common(protocolVersion, peer))) {
                machine.noVerificationAfterResume();
            }
            changed();
        }
        if (resp.getDataPlaneAddressesCount() == 0) {
            abortDestination("destination offered no data-plane address");
            fail(Status.Code.FAILED_PRECONDITION, "destination offered no data-plane address");
            throw Status.FAILED_PRECONDITION.withDescription("destination offered no data-plane address").asRuntimeException();
        }
        dataAddresses = List.copyOf(resp.getDataPlaneAddressesList());
    }

    /** Every data-plane address the destination offered: the page streams are spread over all of them. */
    private List<String> dataAddresses;

    private List<io.grpc.ManagedChannel> dataChannels(List<String> addresses) {
        return channels.freshData(addresses, accepted.getDataStreamCount()); // connected afresh (Channels#fresh)
    }

    /** Zero ranges and LZ4 blocks only if the destination accepted ZERO_PAGE_ELISION and LZ4_PAGE_COMPRESSION. */
    private PageSender.Options senderOptions() {
        PageCompression compression = PageCompression.OFF;
        if (accepted.getFeaturesList().contains(MigrationConfig.Feature.LZ4_PAGE_COMPRESSION)) {
            compression = machine.policy().pageCompression() == MigrationPolicy.PageCompression.LZ4
                    ? PageCompression.ALWAYS : PageCompression.AUTO;
        }
        return PageSender.Options.DEFAULT.withZeroPageElision(
                accepted.getFeaturesList().contains(MigrationConfig.Feature.ZERO_PAGE_ELISION))
                .withCompression(compression);
    }

    /** How long mode AUTO watches the guest's writes before round 1: short, so that few pages are written twice. */
    private static final long WRITE_SAMPLE_MILLIS = 200;

    /** Mode AUTO: measures the guest's write rate over a short window; the pages stay dirty for round 2. */
    private void sampleWriteRate(DirtyTracker log) throws InterruptedException {
        long t0 = System.nanoTime();
        Thread.sleep(WRITE_SAMPLE_MILLIS); // the measurement window itself, not a wait for anything
        long scanStart = System.nanoTime();
        long pages = log.fetch().count();
        // The scan sees each page at some point while it runs: count the window to its middle.
        long window = (scanStart + System.nanoTime()) / 2 - t0;
        long rate = (long) (pages * (double) RoundStats.PAGE_BYTES * 1e9 / window);
        synchronized (this) {
            machine.writeRateSampled(rate);
        }
        LOG.log(System.Logger.Level.INFO, "{0}: mode AUTO: the guest wrote {1} pages in {2} ms ({3} MiB/s)", name,
                pages, window / 1_000_000, rate >> 20);
    }

    private void pauseSource() {
        dirtyRate = 0;
        try {
            vm.vm().pause();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw Status.CANCELLED.withDescription("interrupted while pausing the source").asRuntimeException();
        }
        paused = true;
    }

    @Override
    public void run() {
        if (machine.mode() == dev.ferry.v1.MigrationMode.POSTCOPY) {
            runPostcopy();
            return;
        }
        LOG.log(System.Logger.Level.INFO, "{0}: precopy to {1}; the switchover is expected to cost {2} ms besides its "
                + "last pages (from {3} earlier switchovers)", name, destination,
                String.format("%.1f", overheadEstimate.toNanos() / 1e6), overheadSamples);
        GuestVm v = vm.vm();
        DirtyTracker log = v.dirtyTracker();
        PageHashes hashes = new PageHashes(v.memory()); // kept up to date with every page sent
        try (MigrationTracing.Scope traced = trace.enter(); // the page streams carry the migration's trace
                PageSender sender = new PageSender(dataChannels(dataAddresses), token, v.memory(), hashes,
                accepted.getDataStreamCount(), limiter(), senderOptions());
                GuestThrottle throttle = new GuestThrottle(v, name)) {
            log.enable();
            log.fetchAndClear(); // from here on, every guest write shows up in the log
            if (machine.policy().autoMode()) {
                sampleWriteRate(log);
            }
            // Round 1: every page that holds data. Pages in the memfd's holes were never written; the
            // destination's fresh memory is zero there too, so they cost nothing (the digest proves it).
            DirtyBitmap pages = DirtyBitmap.populated(v.memory());
            long holes = v.memory().totalPages() - pages.count();
            while (true) {
                MigrationTracing.Span round = trace.child("ferry.precopy.round");
                dev.ferry.dataplane.RoundStats rs;
                DirtyBitmap next;
                Decision d;
                int throttlePercent;
                try {
                    rs = sendRound(sender, pages);
                    next = log.fetchAndClear();
                    synchronized (this) {
                        machine.roundFinished(new RoundStats(rs.pagesSent(), rs.zeroPages() + holes, next.count(),
                                Duration.ofNanos(rs.nanos())));
                        holes = 0;
                        d = machine.decideAfterRound();
                        throttlePercent = machine.estimates().throttlePercent();
                        changed();
                    }
                    round.set("ferry.round", rs.round()).set("ferry.pages_sent", rs.pagesSent())
                            .set("ferry.zero_pages", rs.zeroPages()).set("ferry.wire_bytes", rs.wireBytes())
                            .set("ferry.pages_dirtied", next.count()).set("ferry.decision", d.action().name())
                            .set("ferry.throttle_percent", throttlePercent);
                    metrics.round(machine.mode(), rs.wireBytes());
                    dirtyRate = (long) (next.count() * PAGE_BYTES * 1e9 / Math.max(1, rs.nanos()));
                } catch (Throwable t) {
                    round.failed(describe(t));
                    throw t;
                } finally {
                    round.end();
                }
                LOG.log(System.Logger.Level.INFO, "{0}: round {1}: {2} pages, {3} zero; {4} dirtied -> {5} in {6} ms{7}",
                        name, rs.round(), rs.pagesSent(), rs.zeroPages(), next.count(), d.action(),
                        rs.nanos() / 1_000_000, throttlePercent > 0 ? "; guest throttled " + throttlePercent + " %" : "");
                if (d.action() == Decision.Action.CONTINUE_PRECOPY) {
                    throttle.set(throttlePercent);
                } else {
                    throttle.close(); // before anything pauses the guest, or gives it back
                }
                if (d.action() == Decision.Action.FAIL) {
                    abortDestination(d.reason());
                    log.disable();
                    vm.hold("", Vm.State.RUNNING);
                    return;
                }
                pages = next;
                if (d.action() == Decision.Action.STOP_AND_COPY) {
                    break;
                }
                if (d.action() == Decision.Action.SWITCH_TO_POSTCOPY) {
                    // Hybrid: stop here; what the guest dirtied since its last copy is stale on the
                    // destination, so it is dropped there and arrives again by fault or push.
                    boolean resumedThere;
                    try (ThreadPriority.Raised downtime = ThreadPriority.raise()) {
                        DowntimeSteps steps;
                        synchronized (this) {
                            checkCancelled();
                            steps = new DowntimeSteps();
                            pauseSource();
                            steps.paused();
                        }
                        pages.or(log.fetchAndClear());
                        steps.harvested();
                        log.disable();
                        if (fault == FaultInjection.DROP_DIRTY_PAGE) {
                            dropStalePage(pages, hashes); // neither pushed nor discarded: stays stale there
                        }
                        resumedThere = switchToPostcopy(hashes, pages, pages, steps);
                    }
                    if (resumedThere) {
                        pushAfterSwitchover(sender, pages);
                    }
                    return;
                }
            }
            // Stop and copy: the guest stops; what it wrote since the last harvest goes out last.
            MigrationTracing.Span stopAndCopy = trace.child("ferry.stop_and_copy");
            try (ThreadPriority.Raised downtime = ThreadPriority.raise();
                    MigrationTracing.Scope in = stopAndCopy.enter()) {
                DowntimeSteps steps;
                synchronized (this) {
                    checkCancelled();
                    steps = new DowntimeSteps();
                    pauseSource();
                    steps.paused();
                    machine.stopAndCopyStarted();
                    changed();
                }
                hold.reached(FaultHold.Point.STOP_AND_COPY, name);
                pages.or(log.fetchAndClear());
                steps.harvested();
                if (fault == FaultInjection.DROP_DIRTY_PAGE) {
                    dropStalePage(pages, hashes);
                }
                // Paused, the device state is final: it is saved and encoded while the last pages are on the wire.
                ByteString[] envelope = new ByteString[1];
                dev.ferry.dataplane.RoundStats rs = sendRound(sender, pages,
                        () -> envelope[0] = encodeDeviceState(v.saveState(), steps));
                steps.lastPagesSent(rs.pagesSent() + rs.zeroPages());
                stopAndCopy.set("ferry.pages_sent", rs.pagesSent()).set("ferry.wire_bytes", rs.wireBytes());
                metrics.round(machine.mode(), rs.wireBytes());
                synchronized (this) {
                    machine.roundFinished(new RoundStats(rs.pagesSent(), rs.zeroPages(), 0, Duration.ofNanos(rs.nanos())));
                    machine.deviceStateStarted();
                    changed();
                }
                hold.reached(FaultHold.Point.DEVICE_STATE, name);
                DeviceStateOut state = sendDeviceState(envelope[0], steps);
                // Always sent: the destination refuses to run a guest without the digest of what it was sent
                // (transfer integrity); verify_memory only decides the comparison after the resume.
                MemoryDigest digest = Digests.toProto(hashes.digest(), v.memory().totalPages());
                synchronized (this) {
                    machine.deviceStateSent(state.bytes()); // from here on, cancel is refused
                    changed();
                }
                CompleteIncomingMigrationRequest.Builder req = CompleteIncomingMigrationRequest.newBuilder()
                        .setMigration(name).setPostcopy(false).setDeviceState(state.atSwitchover());
                if (digest != null) {
                    req.setSourceMemoryDigest(digest);
                }
                steps.switchoverRequested();
                CompleteIncomingMigrationResponse resp = switchover(req.build());
                synchronized (this) {
                    DowntimeBreakdown breakdown = steps.switchedOver(resp);
                    DowntimeSteps.traceInto(stopAndCopy, breakdown);
                    machine.downtimeBreakdown(breakdown);
                    machine.destinationResumed(digest, resp);
                    switchoverOverhead.record(machine.downtime(), breakdown);
                    changed();
                }
            } catch (Throwable t) {
                stopAndCopy.failed(describe(t));
                throw t;
            } finally {
                stopAndCopy.end();
            }
            log.disable();
            // The guest lives on the destination now, once its memory there proves to be ours.
            if (verifyOnDestination(() -> toClose.set(vms.removeLater(vm.name())))) {
                LOG.log(System.Logger.Level.INFO, "{0}: completed; {1} runs on {2}", name, vm.name(), destination);
            }
        } catch (Throwable t) {
            recover(t);
        } finally {
            synchronized (this) {
                settled = true;
                changed();
            }
            closeReleasedVm();
        }
    }

    /**
     * Postcopy: the vCPUs are paused since negotiation; device state goes over, the destination runs
     * the VM and faults its pages from our pager, while everything that holds data is pushed in the
     * background, near the latest fault first. Once the destination runs the VM the source keeps
     * its (paused) copy until every page has arrived: the guest's memory is split between the hosts.
     */
    private void runPostcopy() {
        GuestVm v = vm.vm();
        PageHashes hashes = new PageHashes(v.memory());
        try (MigrationTracing.Scope traced = trace.enter(); // the page streams carry the migration's trace
                PageSender sender = new PageSender(dataChannels(dataAddresses), token, v.memory(), hashes,
                accepted.getDataStreamCount(), limiter(), senderOptions())) {
            DirtyBitmap toPush = DirtyBitmap.populated(v.memory()); // most of it: what grows later is cheap to add
            boolean resumedThere;
            try (ThreadPriority.Raised downtime = ThreadPriority.raise()) {
                // Everything that can be prepared with the guest running is ready: stop it now.
                DowntimeSteps steps;
                synchronized (this) {
                    checkCancelled();
                    steps = new DowntimeSteps();
                    pauseSource();
                    steps.paused();
                    machine.negotiated(accepted);
                    changed();
                }
                toPush = DirtyBitmap.populated(v.memory(), toPush);
                steps.harvested();
                if (fault == FaultInjection.DROP_DIRTY_PAGE) {
                    dropLastPage(toPush); // not pushed: the destination takes it for a hole, reads zero
                }
                resumedThere = switchToPostcopy(hashes, toPush, null, steps);
            }
            if (resumedThere) {
                pushAfterSwitchover(sender, toPush);
            }
        } catch (Throwable t) {
            recover(t); // only reached if the sender could not even be built
        } finally {
            synchronized (this) {
                settled = true;
                changed();
            }
            closeReleasedVm();
        }
    }

    /**
     * Switches to postcopy with the source paused: device state, then resume on the destination, which
     * will fault from our pager and expects {@code toPush}. {@code discard}: pages the destination holds
     * stale copies of (hybrid), or null. False if the destination did not resume (then the source VM
     * runs again, as before the migration).
     */
    private boolean switchToPostcopy(PageHashes hashes, DirtyBitmap toPush, DirtyBitmap discard, DowntimeSteps steps) {
        MigrationTracing.Span span = trace.child("ferry.postcopy.switchover");
        try (MigrationTracing.Scope in = span.enter()) {
            boolean resumed = switchToPostcopy(hashes, toPush, discard, steps, span);
            if (!resumed) {
                span.failed("the destination did not resume the VM");
            }
            return resumed;
        } finally {
            span.end();
        }
    }

    private boolean switchToPostcopy(PageHashes hashes, DirtyBitmap toPush, DirtyBitmap discard, DowntimeSteps steps,
            MigrationTracing.Span span) {
        GuestVm v = vm.vm();
        // Guarded: the source memory is unmapped only after this source is closed (no read in flight).
        MemoryPageSource source = new MemoryPageSource(v.memory(), (gpa, pages) -> {
            lastFault.set(gpa);
            PostcopyPush push = activePush;
            if (push != null) {
                push.served(gpa, pages);
            }
        });
        postcopySource = source;
        postcopyHashes = hashes;
        pagers.put(token, source);
        try {
            synchronized (this) {
                checkCancelled();
                if (machine.phase() == Migration.Phase.PRECOPY) {
                    machine.deviceStateStarted(); // hybrid switching over
                }
                changed();
            }
            hold.reached(FaultHold.Point.DEVICE_STATE, name);
            DeviceStateOut state = sendDeviceState(encodeDeviceState(v.saveState(), steps), steps);
            synchronized (this) {
                machine.deviceStateSent(state.bytes());
                changed();
            }
            CompleteIncomingMigrationRequest.Builder req = CompleteIncomingMigrationRequest.newBuilder()
                    .setMigration(name).setPostcopy(true).setDeviceState(state.atSwitchover())
                    .addAllPushPages(Bitmaps.toProto(v.memory(), toPush));
            if (discard != null) {
                req.addAllDiscardPages(Bitmaps.toProto(v.memory(), discard));
            }
            steps.switchoverRequested();
            CompleteIncomingMigrationResponse resp = switchover(req.build());
            synchronized (this) {
                DowntimeBreakdown breakdown = steps.switchedOver(resp);
                DowntimeSteps.traceInto(span, breakdown);
                machine.downtimeBreakdown(breakdown);
                machine.destinationResumed(null, resp);
                changed();
            }
            return true;
        } catch (Throwable t) {
            pagers.remove(token);
            source.close();
            recover(t);
            return false;
        }
    }

    /**
     * The destination runs the guest: push the rest while it faults what it needs. A failure here leaves
     * both sides waiting for ResumeMigration: the guest's memory is split between the hosts.
     */
    private void pushAfterSwitchover(PageSender sender, DirtyBitmap toPush) {
        MigrationTracing.Span span = trace.child("ferry.postcopy");
        try (MigrationTracing.Scope in = span.enter()) {
            pushAndComplete(sender, toPush);
        } catch (Throwable t) {
            span.failed(describe(t));
            // The destination runs the guest and may still need pages from us: keep the paused copy and the
            // pager, and report the migration paused; the guest survives a cut link.
            synchronized (this) {
                if (machine.accepts(SourceStateMachine.Event.POSTCOPY_CONNECTION_LOST)) {
                    machine.postcopyConnectionLost(describe(t));
                } else if (!machine.isTerminal()) {
                    machine.failed(codeOf(t), describe(t));
                }
                changed();
            }
            logFailure(name + ": postcopy interrupted: " + describe(t), t);
        } finally {
            span.end();
        }
    }

    private void closeReleasedVm() {
        Runnable close = toClose.getAndSet(null);
        if (close != null) {
            close.run();
        }
    }

    /** Live progress of the push: pages its streams took since the last call. */
    private synchronized void pushProgress(long pages) {
        if (machine.accepts(SourceStateMachine.Event.BATCH_SENT)) {
            machine.batchSent(pages, 0);
            changed();
        }
    }

    /** Pushes {@code toPush} near the latest fault first, then ends postcopy and releases the source VM. */
    private void pushAndComplete(PageSender sender, DirtyBitmap toPush) throws Exception {
        GuestVm v = vm.vm();
        PageHashes hashes = postcopyHashes;
        MemoryPageSource source = postcopySource;
        // One round however large: the streams never drain and wait for acknowledgements half-way.
        PostcopyPush push = new PostcopyPush(v.memory(), toPush, () -> lastFault.getAndSet(-1), this::pushProgress);
        if (pushed == null) {
            pushed = DirtyBitmap.empty(v.memory());
        }
        int round;
        synchronized (this) {
            round = machine.roundStarted();
            changed();
        }
        dev.ferry.dataplane.RoundStats rs;
        activePush = push;
        try {
            rs = sender.sendRound(round, push, () -> false);
        } finally {
            activePush = null;
        }
        metrics.round(machine.mode(), rs.wireBytes());
        synchronized (this) {
            machine.pagesCompressed(rs.compressedPages(), rs.compressedBytes());
            machine.roundFinished(new RoundStats(rs.pagesSent(), rs.zeroPages(), 0, Duration.ofNanos(rs.nanos())));
            changed();
        }
        pushed.or(push.handedOut()); // all acknowledged, so all hashed as sent
        // After a recovery the push sent only what was still missing; pages the destination faulted in
        // meanwhile were never hashed here. The source is paused: hash them as they are.
        DirtyBitmap unhashed = DirtyBitmap.populated(v.memory());
        unhashed.andNot(pushed);
        unhashed.forEachDirtyPage(hashes::refresh);
        MemoryDigest digest = Digests.toProto(hashes.digest(), v.memory().totalPages()); // always: see above
        dev.ferry.v1.CompleteIncomingPostcopyRequest.Builder req = dev.ferry.v1.CompleteIncomingPostcopyRequest
                .newBuilder().setMigration(name);
        if (digest != null) {
            req.setSourceMemoryDigest(digest);
        }
        dev.ferry.v1.CompleteIncomingPostcopyResponse done = control().completeIncomingPostcopy(req.build());
        if (digest != null && !done.getMemoryVerified()) {
            LOG.log(System.Logger.Level.ERROR, "{0}: the pages the destination placed do not add up to the pages "
                    + "sent (digest {1} here, {2} there)", name, Long.toHexString(hashes.digest()),
                    done.hasDestinationMemoryDigest() ? Long.toHexString(Digests.fromProto(done.getDestinationMemoryDigest()))
                    : "none");
        }
        synchronized (this) {
            machine.postcopyCompleted(digest, done);
            changed();
        }
        // Every page is on the destination; the source keeps its paused copy until the verification is done, so
        // a mismatch can still give the VM back to it. The copy is released before COMPLETED shows, so a caller
        // that sees COMPLETED (after a recovery this thread, not the original one, ends the migration) finds it gone.
        boolean completed = verifyOnDestination(() -> {
            pagers.remove(token);
            source.close();
            toClose.set(vms.removeLater(vm.name()));
        });
        if (completed) {
            LOG.log(System.Logger.Level.INFO, "{0}: postcopy completed; {1} runs on {2}", name, vm.name(), destination);
        } else {
            pagers.remove(token);
            source.close();
        }
    }

    /**
     * In VERIFYING (else only {@code release} runs): compares the destination's memory with ours, paused since
     * the pause and so still the guest as it was then, and settles where the VM lives. The destination hashes the
     * pages its guest has not written since resuming; then we hash the same pages of ours. Not in parallel: a
     * page the guest writes before the destination has read its write log again is left out, so the
     * destination's hashing must finish soon, not share the host's cores with ours (agents may share a host).
     * Match: CommitIncomingMigration, {@code release} our copy, COMPLETED, true. Mismatch: the
     * destination stops and deletes its guest, ours resumes, FAILED with DATA_LOSS. No answer: FAILED,
     * undecided, our copy stays paused (neither side may run the guest alone).
     */
    private boolean verifyOnDestination(Runnable release) {
        synchronized (this) {
            if (machine.phase() != Migration.Phase.VERIFYING) {
                release.run();
                return machine.phase() == Migration.Phase.COMPLETED;
            }
        }
        MigrationTracing.Span span = trace.child("ferry.verification");
        try (MigrationTracing.Scope in = span.enter()) {
            boolean completed = compareWithDestination(release);
            if (!completed) {
                span.failed("not verified: " + snapshot().getPhase());
            }
            return completed;
        } finally {
            span.end();
        }
    }

    /** {@link #verifyOnDestination} once in VERIFYING. */
    private boolean compareWithDestination(Runnable release) {
        hold.reached(FaultHold.Point.COMPLETING, name);
        GuestVm v = vm.vm();
        dev.ferry.memory.GuestMemory mem = v.memory();
        MemoryVerification result;
        java.util.List<Integer> differing;
        int chunkPages;
        try {
            dev.ferry.v1.VerifyIncomingMigrationResponse r = retried(() -> control().verifyIncomingMigration(
                    dev.ferry.v1.VerifyIncomingMigrationRequest.newBuilder().setMigration(name).build()));
            DirtyBitmap written = Bitmaps.fromProto(mem, r.getWrittenSinceResumeList());
            chunkPages = r.getChunkPages();
            dev.ferry.memory.ChunkDigests theirs = new dev.ferry.memory.ChunkDigests(chunkPages,
                    r.getChunkDigestsList().stream().mapToLong(Long::longValue).toArray());
            PageHashes ours = new PageHashes(mem);
            DirtyBitmap toHash = DirtyBitmap.populated(mem); // holes read as zero and count 0, as there
            toHash.andNot(written);
            toHash.forEachDirtyPage(ours::refresh);
            dev.ferry.memory.ChunkDigests mine = dev.ferry.memory.ChunkDigests.of(ours, written, chunkPages);
            differing = mine.differing(theirs);
            result = new MemoryVerification(r.getPagesCompared(), written.count(),
                    Math.max(mine.sums().length, differing.size()), differing.size());
        } catch (RuntimeException e) {
            if (!takeBackFromVanishedDestination("memory verification could not be done: " + describe(e))) {
                undecided(codeOf(e), "memory verification could not be done: " + describe(e));
            }
            return false;
        }
        SourceStateMachine.Verdict verdict;
        synchronized (this) {
            verdict = machine.verificationCompared(result);
            changed();
        }
        if (verdict == SourceStateMachine.Verdict.COMMIT) {
            try {
                retried(() -> control().commitIncomingMigration(dev.ferry.v1.CommitIncomingMigrationRequest.newBuilder()
                        .setMigration(name).build()));
            } catch (RuntimeException e) {
                String why = "memory verified, but the destination did not confirm it keeps the VM: " + describe(e);
                if (!takeBackFromVanishedDestination(why)) {
                    undecided(codeOf(e), why);
                }
                return false;
            }
            release.run();
            synchronized (this) {
                machine.committed();
                changed();
            }
            return true;
        }
        StringBuilder where = new StringBuilder();
        for (int i = 0; i < Math.min(4, differing.size()); i++) {
            long gpa = (long) differing.get(i) * chunkPages * dev.ferry.memory.GuestMemory.PAGE_SIZE;
            where.append(i == 0 ? "" : ", ").append(String.format("0x%x", gpa));
        }
        String reason = result.chunksDiffering() + " of " + result.chunks() + " chunks differ (from "
                + where + (differing.size() > 4 ? ", ..." : "") + ") among " + result.pagesCompared()
                + " pages the guest did not write after resuming";
        LOG.log(System.Logger.Level.ERROR, "{0}: memory verification failed: {1}; taking the VM back", name,
                result.chunksDiffering() > 0 ? reason : "the pages received do not add up to the pages sent");
        if (!abortConfirmed("memory verification failed: " + reason)) {
            undecided(Status.Code.DATA_LOSS, "memory verification failed (" + reason + "), and the destination did not confirm it discarded"
                    + " its copy: the source keeps its copy paused");
            return false;
        }
        synchronized (this) {
            machine.rolledBack();
            changed();
        }
        v.dirtyTracker().disable();
        if (paused) {
            v.resume();
            paused = false;
        }
        vm.hold("", Vm.State.RUNNING);
        return false;
    }

    /**
     * In VERIFYING, when the destination stopped answering: if its agent is gone (nothing listens at its control
     * address), the guest it ran went with it, and our paused copy, the guest as it was at the switchover, is the
     * only one left: it runs again here, FAILED with UNAVAILABLE. Returns false (nothing done) while the
     * destination may still be there.
     */
    private boolean takeBackFromVanishedDestination(String cause) {
        if (PeerLiveness.probe(channels.redial(destination)) != PeerLiveness.GONE) {
            return false;
        }
        String reason = "the destination agent at " + destination + " is gone (connection refused) while the source"
                + " verified its memory (" + cause + "); the guest runs on the source again from the switchover point";
        synchronized (this) {
            if (!machine.isTerminal()) {
                machine.failed(Status.Code.UNAVAILABLE, reason);
            }
            changed();
        }
        LOG.log(System.Logger.Level.WARNING, "{0}: {1}", name, reason);
        runGuestHereAgain();
        return true;
    }

    /**
     * Called periodically. In POSTCOPY_PAUSED the guest runs (or waits for pages) on the destination: if that
     * agent is gone (connection refused), or answers but no longer knows the session (it restarted), the guest is
     * lost; nothing can bring it back, and the migration ends FAILED with DATA_LOSS. Our paused copy stays, as it
     * was at the switchover, for the operator (it is stale: the guest ran on after it). An unreachable destination
     * may come back: the migration stays paused for ResumeMigration.
     */
    void checkDestination() {
        synchronized (this) {
            if (machine.phase() != Migration.Phase.POSTCOPY_PAUSED || resuming) {
                return;
            }
        }
        PeerLiveness live = PeerLiveness.probe(channels.redial(destination));
        String why = null;
        if (live == PeerLiveness.GONE) {
            why = "the destination agent at " + destination + " is gone (connection refused)";
        } else if (live == PeerLiveness.ALIVE && !destinationKnowsSession()) {
            why = "the destination agent at " + destination + " no longer knows the migration (it restarted)";
        }
        if (why == null) {
            return;
        }
        String reason = "guest lost: " + why + " after the guest resumed there in postcopy; what it wrote there is"
                + " gone. The source keeps its paused copy as of the switchover (stale)";
        synchronized (this) {
            if (machine.phase() != Migration.Phase.POSTCOPY_PAUSED || resuming) {
                return;
            }
            machine.failed(Status.Code.DATA_LOSS, reason);
            changed();
        }
        LOG.log(System.Logger.Level.ERROR, "{0}: {1}", name, reason);
        MemoryPageSource source = postcopySource;
        pagers.remove(token);
        if (source != null) {
            source.close();
        }
        vm.hold("", Vm.State.PAUSED);
    }

    /**
     * A side-effect-free session probe: VerifyIncomingMigration is refused outside VERIFYING without any change,
     * and an unknown session is UNAUTHENTICATED before anything else is looked at.
     */
    private boolean destinationKnowsSession() {
        try {
            control().withDeadlineAfter(5, TimeUnit.SECONDS).verifyIncomingMigration(
                    dev.ferry.v1.VerifyIncomingMigrationRequest.newBuilder().setMigration(name).build());
            return true;
        } catch (StatusRuntimeException e) {
            return e.getStatus().getCode() != Status.Code.UNAUTHENTICATED;
        }
    }

    /** The destination and the source did not agree where the VM lives: both keep what they have. */
    private void undecided(Status.Code code, String reason) {
        synchronized (this) {
            if (!machine.isTerminal()) {
                machine.failed(code, reason);
            }
            changed();
        }
        LOG.log(System.Logger.Level.ERROR, "{0}: {1}", name, reason);
    }

    /** AbortIncomingMigration until the destination answers it (a lost answer is asked again; it is idempotent). */
    private boolean abortConfirmed(String reason) {
        for (int i = 0; i < SWITCHOVER_ATTEMPTS; i++) {
            try {
                control().withDeadlineAfter(10, TimeUnit.SECONDS).abortIncomingMigration(AbortIncomingMigrationRequest
                        .newBuilder().setMigration(name).setReason(com.google.rpc.Status.newBuilder()
                                .setCode(Status.Code.DATA_LOSS.value()).setMessage(reason)).build());
                return true;
            } catch (StatusRuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "{0}: abort on {1}: {2}", name, destination, e.getStatus());
                Status.Code c = e.getStatus().getCode();
                if (c != Status.Code.UNAVAILABLE && c != Status.Code.DEADLINE_EXCEEDED) {
                    return false;
                }
            }
        }
        return false;
    }

    /** A control call whose answer may be lost, asked again (the calls it is used for are idempotent). */
    private <T> T retried(java.util.function.Supplier<T> call) {
        StatusRuntimeException last = null;
        for (int i = 0; i < SWITCHOVER_ATTEMPTS; i++) {
            try {
                return call.get();
            } catch (StatusRuntimeException e) {
                Status.Code c = e.getStatus().getCode();
                if (c != Status.Code.UNAVAILABLE && c != Status.Code.DEADLINE_EXCEEDED) {
                    throw e;
                }
                last = e;
            }
        }
        throw last;
    }

    /**
     * Fault injection: leaves out of {@code pages} one page whose content now differs from what was last sent
     * (its hash in {@code sent}), so the destination keeps a stale copy. The highest such page: low pages hold
     * the guest's status blocks and generation table, which it rewrites at once (and a page it rewrites on the
     * destination before the check is, rightly, not compared); the working set lies above them.
     */
    private void dropStalePage(DirtyBitmap pages, PageHashes sent) {
        dev.ferry.memory.GuestMemory mem = vm.vm().memory();
        java.util.List<dev.ferry.memory.PageRange> ranges = new java.util.ArrayList<>(pages.ranges());
        java.util.Collections.reverse(ranges);
        for (dev.ferry.memory.PageRange r : ranges) {
            for (long p = r.pages() - 1; p >= 0; p--) {
                long gpa = r.gpa() + p * dev.ferry.memory.GuestMemory.PAGE_SIZE;
                long now = PageHashes.hashPage(mem.regionOf(gpa).slice(gpa, (int) dev.ferry.memory.GuestMemory.PAGE_SIZE), gpa);
                if (now != sent.get(gpa)) {
                    pages.clear(gpa);
                    LOG.log(System.Logger.Level.WARNING, "{0}: fault injection drop-dirty-page: page 0x{1} (dirtied"
                            + " since it was sent) is left out; the destination keeps a stale copy", name,
                            Long.toHexString(gpa));
                    return;
                }
            }
        }
        LOG.log(System.Logger.Level.WARNING, "{0}: fault injection drop-dirty-page: no page dirtied since it was sent"
                + " among {1}; nothing dropped", name, pages.count());
    }

    /** Fault injection, mode POSTCOPY: leaves the last page holding data out of the push list. */
    private void dropLastPage(DirtyBitmap toPush) {
        java.util.List<dev.ferry.memory.PageRange> ranges = toPush.ranges();
        if (ranges.isEmpty()) {
            LOG.log(System.Logger.Level.WARNING, "{0}: fault injection drop-dirty-page: no page holds data", name);
            return;
        }
        dev.ferry.memory.PageRange last = ranges.get(ranges.size() - 1);
        long gpa = last.gpa() + (last.pages() - 1) * dev.ferry.memory.GuestMemory.PAGE_SIZE;
        toPush.clear(gpa);
        LOG.log(System.Logger.Level.WARNING, "{0}: fault injection drop-dirty-page: page 0x{1} is left out of the push"
                + " list; the destination fills it with zeros", name, Long.toHexString(gpa));
    }

    /**
     * ResumeMigration after a cut link in postcopy: the destination dials our pager again and says
     * which pages it still misses; we push those and finish. Returns at once; progress shows in the
     * migration's phase.
     */
    void resumePostcopy(String destinationAddress) {
        synchronized (this) {
            machine.refusal(SourceStateMachine.Event.POSTCOPY_CONNECTION_RESTORED).ifPresent(why -> {
                throw Status.FAILED_PRECONDITION.withDescription(why).asRuntimeException();
            });
            if (resuming) {
                throw Status.FAILED_PRECONDITION.withDescription(name + " is already resuming").asRuntimeException();
            }
            resuming = true;
            if (!destinationAddress.isEmpty() && !destinationAddress.equals(destination)) {
                LOG.log(System.Logger.Level.INFO, "{0}: the destination moved from {1} to {2}", name, destination,
                        destinationAddress);
                destination = destinationAddress;
                changed();
            }
        }
        Thread t = new Thread(this::runResume, "migration-resume-" + name);
        t.setDaemon(true);
        t.start();
    }

    private void runResume() {
        GuestVm v = vm.vm();
        try {
            channels.fresh(destination); // the cut left it failing calls at once: connect first
            dev.ferry.v1.ResumeIncomingMigrationResponse r = control().resumeIncomingMigration(
                    dev.ferry.v1.ResumeIncomingMigrationRequest.newBuilder().setMigration(name)
                            .setPostcopyPagerAddress(pagerAddress).build());
            DirtyBitmap missing = Bitmaps.fromProto(v.memory(), r.getMissingPagesList());
            if (r.getDataPlaneAddressesCount() > 0) {
                dataAddresses = List.copyOf(r.getDataPlaneAddressesList());
            }
            dataAddresses.forEach(channels::reset); // dial afresh instead of waiting out a reconnect backoff
            synchronized (this) {
                machine.postcopyPagesMissing(missing.count());
                machine.postcopyConnectionRestored();
                changed();
            }
            LOG.log(System.Logger.Level.INFO, "{0}: postcopy resumed; {1} pages still missing", name, missing.count());
            try (PageSender sender = new PageSender(dataChannels(dataAddresses), token, v.memory(), postcopyHashes,
                    accepted.getDataStreamCount(), limiter(), senderOptions())) {
                pushAndComplete(sender, missing);
            }
        } catch (Throwable t) {
            synchronized (this) {
                if (machine.accepts(SourceStateMachine.Event.POSTCOPY_CONNECTION_LOST)) {
                    machine.postcopyConnectionLost(describe(t));
                }
                changed();
            }
            logFailure(name + ": postcopy resume failed: " + describe(t), t);
        } finally {
            synchronized (this) {
                resuming = false;
                changed();
            }
            closeReleasedVm();
        }
    }

    /** One limiter for the whole migration, every sender and phase: UpdateMigration changes its rate. */
    private synchronized BandwidthLimiter limiter() {
        if (limiter == null) {
            long bps = machine.bandwidthLimit();
            limiter = bps == 0 ? BandwidthLimiter.unlimited() : BandwidthLimiter.bytesPerSecond(bps);
        }
        return limiter;
    }

    private BandwidthLimiter limiter; // guarded by this

    /** UpdateMigration: a new data-plane cap, at once (FAILED_PRECONDITION once the migration ended). */
    synchronized Migration bandwidthLimit(long bytesPerSecond) {
        try {
            machine.bandwidthLimit(bytesPerSecond);
        } catch (IllegalStateException e) {
            throw Status.FAILED_PRECONDITION.withDescription(name + ": " + e.getMessage()).asRuntimeException();
        }
        limiter().setRate(bytesPerSecond);
        LOG.log(System.Logger.Level.INFO, "{0}: bandwidth limit now {1}", name,
                bytesPerSecond == 0 ? "none" : (bytesPerSecond >> 20) + " MiB/s");
        changed();
        return snapshot();
    }

    private dev.ferry.dataplane.RoundStats sendRound(PageSender sender, DirtyBitmap pages)
            throws PageTransferException, InterruptedException {
        return sendRound(sender, pages, () -> { });
    }

    /** A round; {@code whileSending} runs on this thread while its pages go out (see PageSender#sendRound). */
    private dev.ferry.dataplane.RoundStats sendRound(PageSender sender, DirtyBitmap pages, Runnable whileSending)
            throws PageTransferException, InterruptedException {
        int round;
        synchronized (this) {
            checkCancelled();
            round = machine.roundStarted();
            changed();
        }
        dev.ferry.dataplane.RoundStats rs = sender.sendRound(round, pages, () -> cancelRequested, whileSending);
        synchronized (this) {
            machine.pagesCompressed(rs.compressedPages(), rs.compressedBytes());
        }
        checkCancelled();
        return rs;
    }

    /**
     * The device state as it leaves: its size, and the envelope for CompleteIncomingMigrationRequest.device_state
     * (empty when TransferDeviceState already delivered it).
     */
    private record DeviceStateOut(long bytes, ByteString atSwitchover) {}

    /** The state stream in its checksummed envelope, as a snapshot stores it. */
    private static ByteString encodeDeviceState(SectionSet state, DowntimeSteps steps) {
        ByteString envelope = UnsafeByteOperations.unsafeWrap(StateCodec.encode(state)); // never written again
        steps.deviceStateSaved();
        return envelope;
    }

    /**
     * The envelope handed back to ride in the switchover call where the destination accepted
     * DEVICE_STATE_AT_SWITCHOVER (one round trip less in the downtime), else sent now by TransferDeviceState.
     */
    private DeviceStateOut sendDeviceState(ByteString envelope, DowntimeSteps steps) {
        MigrationTracing.Span span = trace.child("ferry.device_state");
        try (MigrationTracing.Scope in = span.enter()) {
            span.set("ferry.device_state_bytes", envelope.size());
            if (accepted.getFeaturesList().contains(MigrationConfig.Feature.DEVICE_STATE_AT_SWITCHOVER)) {
                span.set("ferry.device_state_at_switchover", "true");
                steps.deviceStateTransferred(); // nothing to wait for: it goes with CompleteIncomingMigration
                return new DeviceStateOut(envelope.size(), envelope);
            }
            TransferDeviceStateRequest req = TransferDeviceStateRequest.newBuilder().setMigration(name)
                    .setState(envelope).build();
            cancellable(() -> control().transferDeviceState(req));
            steps.deviceStateTransferred();
            return new DeviceStateOut(envelope.size(), ByteString.EMPTY);
        } catch (RuntimeException e) {
            span.failed(describe(e));
            throw e;
        } finally {
            span.end();
        }
    }

    /** CompleteIncomingMigration, retried when only the answer was lost (the call is idempotent). */
    private CompleteIncomingMigrationResponse switchover(CompleteIncomingMigrationRequest req) {
        StatusRuntimeException last = null;
        for (int i = 0; i < SWITCHOVER_ATTEMPTS; i++) {
            try {
                return control().completeIncomingMigration(req);
            } catch (StatusRuntimeException e) {
                Status.Code c = e.getStatus().getCode();
                if (c != Status.Code.UNAVAILABLE && c != Status.Code.DEADLINE_EXCEEDED) {
                    throw new SwitchoverRefused(e);
                }
                last = e;
            }
        }
        throw last;
    }

    /** The destination answered and did not run the VM. */
    private static final class SwitchoverRefused extends RuntimeException {
        private static final long serialVersionUID = 1L;

        SwitchoverRefused(StatusRuntimeException cause) {
            super(cause.getStatus().getCode() + ": " + cause.getStatus().getDescription(), cause);
        }
    }

    /** Puts everything back as it was before the migration: destination discarded, source VM running. */
    private void recover(Throwable t) {
        String reason = cancelRequested ? "cancelled" : describe(t);
        synchronized (this) {
            if (t instanceof SwitchoverRefused && machine.accepts(SourceStateMachine.Event.SWITCHOVER_REFUSED)) {
                machine.switchoverRefused(codeOf(t), t.getMessage());
            } else if (!machine.isTerminal()) {
                machine.failed(cancelRequested ? Status.Code.CANCELLED : codeOf(t), reason);
            }
            changed();
        }
        if (!(t instanceof CancelledException)) {
            logFailure(name + ": " + reason, t);
        }
        abortDestination(reason);
        runGuestHereAgain();
    }

    /** The guest is ours again: dirty tracking off, vCPUs running if we paused them, the VM released. */
    private void runGuestHereAgain() {
        GuestVm v = vm.vm();
        v.dirtyTracker().disable();
        if (paused) {
            v.resume();
            paused = false;
        }
        vm.hold("", Vm.State.RUNNING);
    }

    /**
     * A peer's answer or a transport failure is one line (its status says it all); only what nobody
     * answered for, a bug here, gets a stack trace.
     */
    private static void logFailure(String line, Throwable t) {
        boolean answered = t instanceof StatusRuntimeException || t instanceof SwitchoverRefused
                || t instanceof PageTransferException;
        if (answered) {
            LOG.log(System.Logger.Level.WARNING, line);
        } else {
            LOG.log(System.Logger.Level.WARNING, line, t);
        }
    }

    /** FAILED_PRECONDITION with the versions, as the destination refuses a source outside its window. */
    private StatusRuntimeException incompatibleVersion(int peer, String why) {
        com.google.rpc.Status s = com.google.rpc.Status.newBuilder().setCode(Status.Code.FAILED_PRECONDITION.value())
                .setMessage(why).addDetails(com.google.protobuf.Any.pack(dev.ferry.v1.IncompatibilityDetails.newBuilder()
                        .addMismatches(Compatibility.mismatch("protocol_version", protocolVersion, peer, why)).build()))
                .build();
        return io.grpc.protobuf.StatusProto.toStatusRuntimeException(s);
    }

    /** The gRPC code a failure keeps in Migration.error: a peer's answer as it was, a bug INTERNAL. */
    static Status.Code codeOf(Throwable t) {
        if (t instanceof PageTransferException p) {
            return p.status().getCode();
        }
        if (t instanceof StatusRuntimeException s) {
            return dev.ferry.dataplane.PageTransferException.linkLoss(s.getStatus()).getCode();
        }
        if (t.getCause() instanceof StatusRuntimeException s) { // SwitchoverRefused
            return s.getStatus().getCode();
        }
        if (t instanceof CancelledException) {
            return Status.Code.CANCELLED;
        }
        if (t instanceof dev.ferry.linux.NativeException n && n.is(dev.ferry.linux.Errno.ENOMEM)) {
            return Status.Code.RESOURCE_EXHAUSTED;
        }
        return Status.Code.INTERNAL;
    }

    private static String describe(Throwable t) {
        if (t instanceof PageTransferException p) {
            return "page transfer failed: " + p.status().getCode() + ": " + p.status().getDescription();
        }
        if (t instanceof StatusRuntimeException s) {
            Status st = dev.ferry.dataplane.PageTransferException.linkLoss(s.getStatus());
            return st.getCode() + ": " + st.getDescription();
        }
        if (t instanceof SwitchoverRefused) {
            return "the destination refused the switchover: " + t.getMessage(); // the peer's status, not our class
        }
        return t.getClass().getSimpleName() + ": " + t.getMessage();
    }

    private void abortDestination(String reason) {
        if (token == null) {
            return;
        }
        try {
            control().withDeadlineAfter(5, TimeUnit.SECONDS).abortIncomingMigration(AbortIncomingMigrationRequest
                    .newBuilder().setMigration(name)
                    .setReason(com.google.rpc.Status.newBuilder().setCode(Status.Code.ABORTED.value()).setMessage(reason))
                    .build());
        } catch (StatusRuntimeException e) {
            // The destination may be gone; its idle timeout discards the half-received VM.
            LOG.log(System.Logger.Level.INFO, "{0}: abort on {1}: {2}", name, destination, e.getStatus());
        }
    }

    /**
     * CancelMigration: accepted before the destination resumed. Returns once the source VM runs again
     * and the destination was told to discard its copy (or {@code timeout} passed).
     */
    void cancel(Duration timeout) throws InterruptedException {
        synchronized (this) {
            boolean queued = machine.phase() == Migration.Phase.QUEUED;
            try {
                machine.cancelRequested();
            } catch (IllegalTransitionException e) {
                throw Status.FAILED_PRECONDITION.withDescription(e.getMessage()).asRuntimeException();
            }
            cancelRequested = true;
            if (queued && ticket != null && ticket.queued()) {
                ticket.release(); // leaves the queue; its thread wakes and settles
            }
            if (inFlight != null) {
                inFlight.cancel(Status.CANCELLED.withDescription(name + " cancelled").asRuntimeException());
            }
            changed();
        }
        awaitSettled(timeout);
    }

    /**
     * Runs a control call that CancelMigration may interrupt (negotiation, device state): a cancel
     * must not wait for a slow or stuck destination.
     */
    private <T> T cancellable(java.util.concurrent.Callable<T> call) {
        io.grpc.Context.CancellableContext ctx = io.grpc.Context.current().fork().withCancellation();
        synchronized (this) {
            if (cancelRequested) {
                throw new CancelledException();
            }
            inFlight = ctx;
        }
        try {
            return ctx.call(call);
        } catch (RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new IllegalStateException(e);
        } finally {
            synchronized (this) {
                inFlight = null;
            }
            ctx.cancel(null);
        }
    }

    /** SwitchToPostcopy: hybrid only; takes effect after the running precopy round. */
    synchronized void requestSwitchToPostcopy() {
        try {
            machine.requestSwitchToPostcopy();
        } catch (IllegalTransitionException e) {
            throw Status.FAILED_PRECONDITION.withDescription(e.getMessage()).asRuntimeException();
        }
        changed();
    }

    /** Waits until the migration ended and its cleanup is done; false on timeout. */
    synchronized boolean awaitSettled(Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!settled) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return false;
            }
            TimeUnit.NANOSECONDS.timedWait(this, left);
        }
        return true;
    }

    /** Marks a migration that never started its thread (negotiation failed) as settled. */
    synchronized void settleWithoutRunning() {
        settled = true;
        changed();
    }

    private void checkCancelled() {
        if (cancelRequested) {
            throw new CancelledException();
        }
    }

    private static final class CancelledException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        CancelledException() {
            super("cancelled", null, false, false);
        }
    }

    private void fail(Status.Code code, String reason) {
        synchronized (this) {
            if (!machine.isTerminal()) {
                machine.failed(code, reason);
            }
            changed();
        }
        if (paused) {
            vm.vm().resume();
            paused = false;
        }
        vm.hold("", Vm.State.RUNNING);
    }

    private void changed() {
        version++;
        notifyAll();
        if (machine.isTerminal() && settled) {
            if (ticket != null) {
                ticket.release(); // idempotent: the next queued migration may start
            }
            // The record is kept for Get/ListMigrations: let go of what only a live migration needs (postcopy's
            // page hashes take 8 bytes per guest page; the page source and push bitmap point at freed memory).
            postcopyHashes = null;
            postcopySource = null;
            pushed = null;
        }
        if (!counted && machine.isTerminal() && settled) {
            counted = true;
            Migration last = snapshot();
            metrics.ended(last);
            trace.set("ferry.phase", last.getPhase().name());
            if (last.getPhase() != Migration.Phase.COMPLETED) {
                trace.failed(last.getPhase() + (last.hasError() ? ": " + last.getError().getMessage() : ""));
            }
            trace.end();
        }
    }

    /** Bytes/s the guest dirtied during the latest precopy round (0 once paused). */
    long dirtyRate() {
        return dirtyRate;
    }

    /** A snapshot and whether it is the last one, taken together (a watcher must not miss the final phase). */
    record Watched(Migration migration, boolean last) {}

    synchronized Watched watched() {
        return new Watched(snapshot(), isTerminal());
    }

    /** Terminal and cleaned up: what watchers wait for before their last snapshot. */
    synchronized boolean isTerminal() {
        return machine.isTerminal() && settled;
    }

    /** Waits until something changed after {@code seen} or {@code timeout} passed; returns the new version. */
    synchronized long awaitChange(long seen, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (version == seen && !(machine.isTerminal() && settled)) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                break;
            }
            TimeUnit.NANOSECONDS.timedWait(this, left);
        }
        return version;
    }

    synchronized Migration snapshot() {
        Migration.Builder b = Migration.newBuilder().setName(name).setRole(Migration.Role.SOURCE).setVm(vm.name())
                .setSourceAddress(sourceAddress).setDestinationAddress(destination).setDestinationVm(destinationVm);
        machine.writeTo(b);
        if (machine.phase() == Migration.Phase.QUEUED) {
            String waiting = ticket != null ? ticket.waitingFor() : "";
            b.setQueuedReason(waiting.isEmpty() ? destinationBusy : waiting);
        }
        if (machine.isTerminal() && !settled) {
            // A terminal phase is shown only once it holds (source VM running again, destination told to
            // discard its copy), so a caller that sees CANCELLED or FAILED can rely on it at once.
            var h = machine.history();
            for (int i = h.size() - 1; i >= 0; i--) {
                if (!SourceStateMachine.TERMINAL.contains(h.get(i).phase())) {
                    b.setPhase(h.get(i).phase());
                    break;
                }
            }
            b.clearEndTime().clearStatistics();
            return b.build();
        }
        machine.error().ifPresent(b::setError);
        return b.build();
    }
}
