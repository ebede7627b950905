package dev.ferry.control.migration;

import com.google.protobuf.Any;
import dev.ferry.control.vm.ManagedVm;
import dev.ferry.control.vm.VmProtos;
import dev.ferry.control.vm.VmRegistry;
import dev.ferry.dataplane.IncomingPages;
import dev.ferry.dataplane.MemoryPageWriter;
import dev.ferry.dataplane.postcopy.GrpcPageFetcher;
import dev.ferry.dataplane.postcopy.PostcopyPager;
import dev.ferry.memory.ChunkDigests;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.v1.MigrationConfig;
import dev.ferry.v1.VerifyIncomingMigrationResponse;
import dev.ferry.v1.CompleteIncomingPostcopyRequest;
import dev.ferry.v1.CompleteIncomingPostcopyResponse;
import dev.ferry.v1.PostcopyStatistics;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.PageHashes;
import dev.ferry.memory.UnwrittenPages;
import dev.ferry.vm.GuestProbe;
import dev.ferry.vm.GuestVm;
import dev.ferry.state.Section;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateCodec;
import dev.ferry.state.StateCorruptedException;
import dev.ferry.state.StateException;
import dev.ferry.state.UnsupportedStateFormatException;
import dev.ferry.v1.CompleteIncomingMigrationRequest;
import dev.ferry.v1.CompleteIncomingMigrationResponse;
import dev.ferry.v1.IncompatibilityDetails;
import dev.ferry.v1.Mismatch;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationProgress;
import dev.ferry.v1.TransferDeviceStateRequest;
import dev.ferry.v1.Vm;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Collection;
import java.util.List;

/**
 * The destination's side of one migration: an empty VM shaped like the source's, pages arriving on
 * the data plane, then device state, then the switchover check and resume. Every call is checked
 * against {@link DestinationStateMachine}; all of them run under this session's lock.
 */
final class DestinationDriver implements IncomingPages {
    private static final System.Logger LOG = System.getLogger(DestinationDriver.class.getName());
    /** CompleteIncomingMigration waits this much beyond two report periods for the guest's first report. */
    private static final Duration FIRST_REPORT_SLACK = Duration.ofMillis(500);
    private static final Duration FIRST_REPORT_MAX_WAIT = Duration.ofSeconds(5);

    final String name;
    final String token;
    final String sourceAddress;
    private final VmRegistry vms;
    private final ManagedVm vm;
    // Null once the session has ended and let go of it (releaseEnded): its page hashes take 8 bytes per guest page.
    private volatile MemoryPageWriter writer;
    private final DestinationStateMachine machine; // guarded by this
    private SectionSet deviceState; // guarded by this
    private CompleteIncomingMigrationResponse completed; // guarded by this: the answer to repeat
    private String completedNote; // guarded by this: logged once, after the answer (see logCompleted)
    private String pagerAddress; // guarded by this (recovery may move it)
    private final Channels channels;
    private volatile PostcopyPager pager; // set when the VM runs here by postcopy
    private volatile PostcopyPager armed; // armed at negotiation (POSTCOPY, HYBRID), not yet started; set under this
    private GuestMemory alias; // guarded by this: where precopy writes while the trap is armed, or null
    private volatile long postcopyResumedNanos;
    private volatile long maxStallNanos = -1; // the guest's worst report gap in its first second here
    private final FaultInjection fault; // tests only: REFUSE_DEVICE_STATE
    private Status.Code failureCode; // guarded by this: the code Migration.error shows, when not the default
    private boolean digestMatched; // guarded by this: the source's memory digest matched ours (switchover or postcopy)

    DestinationDriver(String name, String token, String sourceAddress, String pagerAddress, Channels channels,
            VmRegistry vms, ManagedVm vm, DestinationStateMachine machine) {
        this(name, token, sourceAddress, pagerAddress, channels, vms, vm, machine, FaultInjection.NONE);
    }

    private volatile MigrationMetrics metrics = MigrationMetrics.NONE; // where the postcopy fault latencies go

    /** Records this migration's postcopy fault latencies in {@code m} (the agent's, but for warm-ups). */
    void reportTo(MigrationMetrics m) {
        metrics = m;
    }

    DestinationDriver(String name, String token, String sourceAddress, String pagerAddress, Channels channels,
            VmRegistry vms, ManagedVm vm, DestinationStateMachine machine, FaultInjection fault) {
        this.fault = fault;
        this.name = name;
        this.pagerAddress = pagerAddress;
        this.channels = channels;
        this.token = token;
        this.sourceAddress = sourceAddress;
        this.vms = vms;
        this.vm = vm;
        this.machine = machine;
        GuestVm v = vm.vm();
        this.writer = new MemoryPageWriter(v.memory(), new PageHashes(v.memory()));
    }

    String vmName() {
        return vm.name();
    }

    // ---- data plane (IncomingPages): called from data-plane stream threads

    @Override
    public GuestMemory memory() {
        return live().memory();
    }

    @Override
    public PageHashes hashes() {
        return live().hashes();
    }

    @Override
    public boolean acceptsZeroRanges() {
        return machine.accepted().getFeaturesList().contains(MigrationConfig.Feature.ZERO_PAGE_ELISION);
    }

    @Override
    public boolean acceptsCompressedData() {
        return machine.accepted().getFeaturesList().contains(MigrationConfig.Feature.LZ4_PAGE_COMPRESSION);
    }

    /** The page writer of a session that has not ended; a late stream gets the same refusal as any after the end. */
    private MemoryPageWriter live() {
        MemoryPageWriter w = writer;
        if (w == null) {
            throw new IllegalStateException(name + " has ended: it takes no pages");
        }
        return w;
    }

    /**
     * Once the session has ended, lets go of what only a live session needs (the page hashes, 8 bytes per guest page,
     * and the received device state), so that the record kept for GetMigration and ListMigrations costs
     * little. Idempotent; does nothing before the end.
     */
    synchronized void releaseEnded() {
        if (!machine.isTerminal()) {
            return;
        }
        MemoryPageWriter w = writer;
        if (w != null) {
            w.close(); // waits for a write in flight; any later one is refused
            writer = null;
        }
        closeAlias();
        deviceState = null;
    }

    @Override
    public void writePages(long gpa, int pages, ByteBuffer data) {
        requirePagesAccepted();
        PostcopyPager p = pager;
        if (p != null) {
            p.writePages(gpa, pages, data); // places only what is still missing, exactly once
        } else {
            live().writePages(gpa, pages, data);
            PostcopyPager a = armed;
            if (a != null) {
                a.precopied(gpa, pages, true);
            }
        }
        counted(p != null, pages, 0);
    }

    @Override
    public void zeroPages(long gpa, long pages) {
        requirePagesAccepted();
        PostcopyPager p = pager;
        if (p != null) {
            p.zeroPages(gpa, pages);
        } else {
            live().zeroPages(gpa, pages);
            PostcopyPager a = armed;
            if (a != null) {
                a.precopied(gpa, pages, false);
            }
        }
        counted(p != null, 0, pages);
    }

    /** Pages land while receiving (precopy) or in postcopy, never around the switchover or after the end. */
    private synchronized void requirePagesAccepted() {
        if (!machine.accepts(DestinationStateMachine.Event.PAGES_RECEIVED)) {
            throw new IllegalStateException(name + " takes no pages in state " + machine.state());
        }
    }

    private synchronized void counted(boolean postcopy, long data, long zero) {
        if (machine.accepts(DestinationStateMachine.Event.PAGES_RECEIVED)) {
            machine.pagesReceived(Math.max(1, machine.progress().getRound()), postcopy, data, zero);
        }
    }

    // ---- control plane

    /**
     * Decodes the state stream and validates it exactly as the restore at the switchover will (the VM's
     * {@code validateState}: the registry's check of every section, before anything is applied), so a stream
     * this VM cannot take is refused now, while the source still holds the VM, not inside the downtime.
     * Nothing is applied here; a refusal leaves the session as it was.
     */
    synchronized void transferDeviceState(TransferDeviceStateRequest req) {
        SessionTokens.require(token);
        acceptDeviceState(req.getState());
    }

    /** TransferDeviceState's checks and bookkeeping, also for the state that rides in CompleteIncomingMigration. */
    private void acceptDeviceState(com.google.protobuf.ByteString state) {
        requireAccepts(DestinationStateMachine.Event.DEVICE_STATE_RECEIVED);
        if (fault == FaultInjection.REFUSE_DEVICE_STATE) {
            LOG.log(System.Logger.Level.WARNING, "{0}: fault injection refuse-device-state: refusing the device state",
                    name);
            throw Status.FAILED_PRECONDITION.withDescription("device state refused: this destination was started"
                    + " with --inject-fault refuse-device-state").asRuntimeException();
        }
        SectionSet set;
        try {
            set = StateCodec.decode(state.toByteArray());
        } catch (StateCorruptedException e) {
            throw Status.DATA_LOSS.withDescription("device state damaged in transit: " + e.getMessage())
                    .asRuntimeException();
        } catch (UnsupportedStateFormatException e) {
            throw refused(e);
        } catch (StateException e) {
            throw Status.INVALID_ARGUMENT.withDescription("device state malformed: " + e.getMessage()).asRuntimeException();
        }
        try {
            vm.vm().validateState(set);
        } catch (StateException e) {
            throw refused(e);
        }
        deviceState = set;
        machine.deviceStateReceived(state.size());
    }

    /** FAILED_PRECONDITION naming every problem, with one IncompatibilityDetails mismatch per problem. */
    private static StatusRuntimeException refused(StateException e) {
        IncompatibilityDetails.Builder details = IncompatibilityDetails.newBuilder();
        for (StateException p : e.problems().isEmpty() ? List.of(e) : e.problems()) {
            details.addMismatches(Mismatch.newBuilder()
                    .setField(p.section().map(s -> "state_sections[" + Section.label(s, p.instanceId().orElse(""))
                            + "]").orElse("state"))
                    .setReason(p.getMessage()));
        }
        return StatusProto.toStatusRuntimeException(com.google.rpc.Status.newBuilder()
                .setCode(Status.Code.FAILED_PRECONDITION.value()).setMessage("device state refused: " + e.getMessage())
                .addDetails(Any.pack(details.build())).build());
    }

    /**
     * Verifies the memory digest, restores device state and runs the vCPUs. A repeat of a call that
     * already succeeded gets the same answer (the source retries when an answer is lost).
     */
    synchronized CompleteIncomingMigrationResponse complete(CompleteIncomingMigrationRequest req) {
        SessionTokens.require(token);
        if (!req.getPostcopy() && !req.hasSourceMemoryDigest()) { // never run a copy nobody vouched for
            throw Status.INVALID_ARGUMENT.withDescription("source_memory_digest is required to complete a precopy "
                    + "migration").asRuntimeException();
        }
        if (completed != null) {
            return completed;
        }
        long received = System.nanoTime();
        if (!req.getDeviceState().isEmpty()) {
            if (!machine.accepted().getFeaturesList().contains(MigrationConfig.Feature.DEVICE_STATE_AT_SWITCHOVER)) {
                throw Status.INVALID_ARGUMENT.withDescription("device_state needs the accepted feature "
                        + "DEVICE_STATE_AT_SWITCHOVER").asRuntimeException();
            }
            if (deviceState != null) {
                throw Status.INVALID_ARGUMENT.withDescription("device_state was already sent by TransferDeviceState")
                        .asRuntimeException();
            }
            acceptDeviceState(req.getDeviceState());
        }
        if (req.getPostcopy()) {
            return completePostcopySwitchover(req, received);
        }
        requireAccepts(DestinationStateMachine.Event.COMPLETE);
        long dest = live().hashes().digest();
        CompleteIncomingMigrationResponse.Builder resp = CompleteIncomingMigrationResponse.newBuilder()
                .setDestinationMemoryDigest(Digests.toProto(dest, live().memory().totalPages()));
        if (req.hasSourceMemoryDigest()) {
            long src = Digests.fromProto(req.getSourceMemoryDigest());
            if (src != dest) {
                fail("memory digest mismatch: source " + Long.toHexString(src) + ", destination " + Long.toHexString(dest));
                throw Status.DATA_LOSS.withDescription("memory digest mismatch (source " + Long.toHexString(src)
                        + ", destination " + Long.toHexString(dest) + "): the VM stays on the source").asRuntimeException();
            }
            resp.setMemoryVerified(true);
            digestMatched = true;
        }
        if (armed != null) { // a hybrid migration that converged in precopy: nothing will answer faults
            armed.close();
            armed = null;
        }
        GuestVm v = vm.vm();
        try {
            v.restoreState(deviceState);
        } catch (StateException e) {
            fail("restore failed: " + e.getMessage());
            throw Status.INTERNAL.withDescription("restoring device state failed: " + e.getMessage()).asRuntimeException();
        }
        long sourceLastReport = lastReport(v);
        long trackingNanos = 0;
        if (machine.verifies()) {
            // The guest has not run here: from now on the log holds exactly what it writes, which the
            // verification leaves out. Part of the downtime, so it is measured.
            long t0 = System.nanoTime();
            v.dirtyTracker().enable();
            trackingNanos = System.nanoTime() - t0;
        }
        v.start();
        long resumed = System.nanoTime();
        resp.setResumedTime(ProtoTime.toProto(java.time.Instant.now()));
        machine.completeRequested(false);
        resp.setResumeDuration(VmProtos.duration(resumed - received));
        vm.hold(machine.verifies() ? name : "", machine.verifies() ? Vm.State.MIGRATING_IN : Vm.State.RUNNING);
        // The pause the guest felt: its last report on the source to its first here (one host clock).
        guestPause(v, sourceLastReport).ifPresent(d -> resp.setGuestPause(VmProtos.duration(d)));
        resp.setAnsweredAfterResume(VmProtos.duration(System.nanoTime() - resumed));
        completed = resp.build();
        completedNote = vm.name() + " runs here (write tracking for the verification enabled in " + trackingNanos / 1000
                + " µs)";
        return completed;
    }

    /**
     * Logs that the VM runs here, once: called after CompleteIncomingMigration's answer is sent, since a log line
     * (the logger finds its caller by walking the stack) would otherwise be part of the source's downtime.
     */
    synchronized void logCompleted() {
        if (completedNote != null) {
            LOG.log(System.Logger.Level.INFO, "{0}: {1}", name, completedNote);
            completedNote = null;
        }
    }

    /**
     * Postcopy switchover: arm userfaultfd over the pages not here yet, restore device state, run the
     * vCPUs. Pages the source never wrote stay holes here and read as zero, without asking it.
     */
    private CompleteIncomingMigrationResponse completePostcopySwitchover(CompleteIncomingMigrationRequest req,
            long received) {
        requireAccepts(DestinationStateMachine.Event.COMPLETE);
        GuestVm v = vm.vm();
        GuestMemory mem = v.memory();
        // What precopy (hybrid) delivered stays, except pages the guest dirtied again since: their stale bytes stay
        // in memory too, unseen (the pager traps every touch and replaces them), so nothing is punched out here.
        DirtyBitmap stale = req.getDiscardPagesCount() > 0 ? Bitmaps.fromProto(mem, req.getDiscardPagesList())
                : DirtyBitmap.empty(mem);
        stale.forEachDirtyPage(gpa -> live().hashes().set(gpa, 0));
        PostcopyPager p = armed;
        armed = null;
        try {
            if (p != null) {
                p.admit(stale); // the pager knows what precopy wrote: only the stale pages are left to apply
            } else { // not armed at negotiation: find what is here
                DirtyBitmap present = DirtyBitmap.populated(mem);
                present.andNot(stale);
                p = new PostcopyPager(mem, v.trapMissingPages(), live().hashes(), present, NOT_YET);
                p.onFaultServed(metrics::faultServed);
            }
            p.replaceFetcher(faultStream()); // the source serves faults from now on
            // Before the device state: restoring it may touch guest memory, which traps from now on.
            p.start();
        } catch (Exception e) {
            if (p != null) {
                p.close();
            }
            fail("arming postcopy failed: " + e.getMessage());
            throw Status.INTERNAL.withDescription("arming postcopy failed: " + e.getMessage()).asRuntimeException();
        }
        try {
            v.restoreState(deviceState);
        } catch (StateException e) {
            p.close();
            fail("restore failed: " + e.getMessage());
            throw Status.INTERNAL.withDescription("restoring device state failed: " + e.getMessage()).asRuntimeException();
        }
        pager = p;
        p.onFetcherFailed(st -> linkLost("page faults to the source fail: " + st.getCode() + " " + st.getDescription()));
        long sourceLastReport = lastReport(v);
        v.probe().ifPresent(GuestProbe::resetGapTracking);
        v.dirtyTracker().enable(); // the guest has not run here: from now on it holds exactly what the guest writes
        v.start();
        long resumed = System.nanoTime();
        java.time.Instant resumedAt = java.time.Instant.now();
        postcopyResumedNanos = resumed;
        machine.completeRequested(true);
        vm.hold(name, Vm.State.MIGRATING_IN);
        v.probe().ifPresent(probe -> java.util.concurrent.CompletableFuture.delayedExecutor(1,
                java.util.concurrent.TimeUnit.SECONDS).execute(() -> maxStallNanos = probe.reportStats().maxGapNanos()));
        holesInBackground(p, req.getPushPagesCount() > 0 ? Bitmaps.fromProto(mem, req.getPushPagesList()) : null);
        CompleteIncomingMigrationResponse.Builder resp = CompleteIncomingMigrationResponse.newBuilder()
                .setResumeDuration(VmProtos.duration(resumed - received)).setResumedTime(ProtoTime.toProto(resumedAt));
        guestPause(v, sourceLastReport).ifPresent(d -> resp.setGuestPause(VmProtos.duration(d)));
        resp.setAnsweredAfterResume(VmProtos.duration(System.nanoTime() - resumed));
        completed = resp.build();
        completedNote = vm.name() + " runs here; pages arrive by postcopy";
        return completed;
    }

    /** The link to the source broke in postcopy: the guest stays here, faulting vCPUs parked, until resumed. */
    private synchronized void linkLost(String reason) {
        LOG.log(System.Logger.Level.WARNING, "{0}: {1}; faulting vCPUs wait for ResumeMigration", name, reason);
        if (machine.accepts(DestinationStateMachine.Event.LINK_LOST) && machine.linkLost(reason)) {
            vm.hold(name, Vm.State.POSTCOPY_PAUSED);
        }
    }

    /**
     * ResumeIncomingMigration: faults go to the source's pager again (at {@code pagerAt}, or where it
     * was); the answer lists the pages still missing, which the source pushes again.
     */
    synchronized java.util.List<dev.ferry.v1.PageBitmap> resume(String pagerAt) {
        SessionTokens.require(token);
        requireAccepts(DestinationStateMachine.Event.RESUME);
        if (!pagerAt.isEmpty()) {
            pagerAddress = pagerAt;
        }
        channels.reset(pagerAddress); // a fresh connection, not one waiting out a reconnect backoff
        try {
            pager.replaceFetcher(faultStream());
        } catch (Exception e) {
            throw Status.UNAVAILABLE.withDescription("cannot reach the pager at " + pagerAddress + ": " + e.getMessage())
                    .asRuntimeException();
        }
        machine.resumeRequested();
        vm.hold(name, Vm.State.MIGRATING_IN);
        return Bitmaps.toProto(live().memory(), pager.missing());
    }

    /** A fault stream to the source's pager. */
    private GrpcPageFetcher faultStream() throws Exception {
        // Forked context: the stream must outlive the RPC that opens it, whose context is cancelled.
        return io.grpc.Context.current().fork().call(() -> new GrpcPageFetcher(channels.freshPager(pagerAddress), token));
    }

    /**
     * Modes POSTCOPY and HYBRID: userfaultfd is armed and the connection to the source's pager opened at
     * negotiation, outside the downtime. From here on precopy's pages go through an alias of guest memory, as a
     * touch of the guest's own mapping would trap; the switchover opens the fault stream itself (the source serves
     * faults only once it has paused).
     */
    synchronized void armEarly() {
        channels.pager(pagerAddress).getState(true); // connect now, without waiting for it
        GuestMemory mem = vm.vm().memory();
        PageHashes hashes = live().hashes();
        armed = new PostcopyPager(mem, vm.vm().trapMissingPages(), hashes, NOT_YET);
        armed.onFaultServed(metrics::faultServed);
        try {
            alias = mem.alias();
        } catch (RuntimeException e) {
            armed.close();
            armed = null;
            throw e;
        }
        writer = new MemoryPageWriter(alias, hashes);
    }

    /** Fetches before the switchover: there are none (nothing runs); refuse, to be replaced at switchover. */
    private static final dev.ferry.dataplane.postcopy.PageFetcher NOT_YET = new dev.ferry.dataplane.postcopy.PageFetcher() {
        @Override
        public java.util.concurrent.CompletableFuture<dev.ferry.dataplane.postcopy.FetchedPage> fetch(long gpa, int pages) {
            return java.util.concurrent.CompletableFuture.failedFuture(
                    Status.UNAVAILABLE.withDescription("postcopy has not started").asRuntimeException());
        }

        @Override
        public void close() {}
    };

    /**
     * Pages that are holes on the source (neither here nor coming) count as present holes here: a touch gets a zero
     * page without a fetch, and the rest never takes memory (placing zero pages for all of them, as before, cost a
     * cleared page each: for a 1 GiB guest holding 256 MiB, 768 MiB and a seventh of the CPU during the push).
     */
    private void holesInBackground(PostcopyPager p, DirtyBitmap pushed) {
        if (pushed == null) {
            return; // every page may be pushed
        }
        Thread t = new Thread(() -> {
            // Not here and not coming: zero on the source (never written, or sent as a zero range).
            DirtyBitmap zeroOnSource = p.missing();
            zeroOnSource.andNot(pushed);
            for (var r : zeroOnSource.ranges()) {
                if (pager != p) {
                    return; // the session ended
                }
                p.zeroOnSource(r.gpa(), r.pages());
            }
        }, "source-holes-" + name);
        t.setDaemon(true);
        t.start();
    }

    /** The guest's last progress report on the source (its restored probe state), or 0 if it has no probe. */
    private static long lastReport(GuestVm v) {
        return v.probe().map(p -> p.reportStats().lastReportNanos()).orElse(0L);
    }

    /** Last report on the source to the first here, less one report period; empty if none came in time. */
    private static java.util.Optional<Long> guestPause(GuestVm v, long sourceLastReport) {
        GuestProbe port = v.probe().orElse(null);
        if (port == null) {
            return java.util.Optional.empty();
        }
        long period = port.reportPeriod().toNanos();
        Duration wait = FIRST_REPORT_SLACK.plusNanos(2 * period);
        try {
            if (sourceLastReport != 0 && port.awaitReports(port.reportStats().reports(), 1,
                    wait.compareTo(FIRST_REPORT_MAX_WAIT) < 0 ? wait : FIRST_REPORT_MAX_WAIT)) {
                long first = port.reportStats().firstReportAfterResetNanos();
                if (first > sourceLastReport) {
                    return java.util.Optional.of(Math.max(0, first - sourceLastReport - period));
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return java.util.Optional.empty();
    }

    /**
     * CompleteIncomingPostcopy: every page must be here; the digest of the bytes placed is compared with the
     * source's. The VM keeps running here; with verification the source decides next whether it stays.
     */
    synchronized CompleteIncomingPostcopyResponse completePostcopy(CompleteIncomingPostcopyRequest req) {
        SessionTokens.require(token);
        if (!req.hasSourceMemoryDigest()) {
            throw Status.INVALID_ARGUMENT.withDescription("source_memory_digest is required").asRuntimeException();
        }
        requireAccepts(DestinationStateMachine.Event.POSTCOPY_COMPLETE);
        PostcopyPager p = pager;
        try {
            if (!p.awaitAllPresent(Duration.ofSeconds(30))) {
                throw Status.FAILED_PRECONDITION.withDescription(p.missingPages() + " pages are still missing")
                        .asRuntimeException();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw Status.CANCELLED.withDescription("interrupted").asRuntimeException();
        }
        long dest = live().hashes().digest();
        CompleteIncomingPostcopyResponse.Builder resp = CompleteIncomingPostcopyResponse.newBuilder()
                .setDestinationMemoryDigest(Digests.toProto(dest, live().memory().totalPages()));
        boolean verified = !req.hasSourceMemoryDigest() || Digests.fromProto(req.getSourceMemoryDigest()) == dest;
        resp.setMemoryVerified(req.hasSourceMemoryDigest() && verified);
        digestMatched = req.hasSourceMemoryDigest() && verified;
        if (!machine.verifies()) {
            vm.vm().dirtyTracker().disable(); // tracked for the verification only
        }
        PostcopyPager.Stats st = p.stats();
        machine.postcopyCompleteRequested(0);
        PostcopyStatistics.Builder ps = machine.postcopyStatistics().setPageFaults(st.faults())
                .setFaultLatencyP50Micros(st.p50Micros()).setFaultLatencyP99Micros(st.p99Micros())
                .setFaultLatencyMaxMicros(st.maxMicros()).setVcpuBlockedTime(VmProtos.duration(st.blockedTime().toNanos()))
                .setBackgroundPagesDropped(st.races());
        long stall = firstSecondStall();
        if (stall >= 0) {
            ps.setGuestMaxStall(VmProtos.duration(stall));
        }
        resp.setPostcopy(ps);
        pager = null;
        p.close();
        vm.hold(machine.verifies() ? name : "", machine.verifies() ? Vm.State.MIGRATING_IN : Vm.State.RUNNING);
        if (!verified) {
            LOG.log(System.Logger.Level.ERROR, "{0}: postcopy memory digest mismatch: source {1}, destination {2}", name,
                    Long.toHexString(Digests.fromProto(req.getSourceMemoryDigest())), Long.toHexString(dest));
        }
        return resp.build();
    }

    /**
     * VerifyIncomingMigration: every page the guest has not written since it resumed here must hold what the
     * paused source holds. Hashes them per chunk (the guest keeps running) for the source to compare.
     */
    synchronized VerifyIncomingMigrationResponse verify() {
        SessionTokens.require(token);
        requireAccepts(DestinationStateMachine.Event.VERIFY);
        machine.verifyRequested();
        GuestVm v = vm.vm();
        GuestMemory mem = v.memory();
        long t0 = System.nanoTime();
        UnwrittenPages u;
        // Every page the guest writes before the log is read again drops out of the check: finish quickly.
        try (dev.ferry.linux.ThreadPriority.Raised fast = dev.ferry.linux.ThreadPriority.raise()) {
            u = UnwrittenPages.of(mem, v.dirtyTracker());
        }
        ChunkDigests chunks = u.chunks(ChunkDigests.DEFAULT_CHUNK_PAGES);
        long took = System.nanoTime() - t0;
        LOG.log(System.Logger.Level.INFO, "{0}: hashed the {1} pages the guest did not write since resuming in {2} ms;"
                + " it wrote {3}", name, u.pagesCompared(), took / 1_000_000, u.written().count());
        VerifyIncomingMigrationResponse.Builder r = VerifyIncomingMigrationResponse.newBuilder()
                .addAllWrittenSinceResume(Bitmaps.toProto(mem, u.written())).setChunkPages(chunks.chunkPages())
                .setPagesCompared(u.pagesCompared()).setHashDuration(VmProtos.duration(took));
        for (long sum : chunks.sums()) {
            r.addChunkDigests(sum);
        }
        return r.build();
    }

    /** CommitIncomingMigration: the source verified our memory; the VM is ours and runs untracked. */
    synchronized void commit() {
        SessionTokens.require(token);
        requireAccepts(DestinationStateMachine.Event.COMMIT);
        if (machine.commitRequested()) {
            vm.vm().dirtyTracker().disable();
            vm.hold("", Vm.State.RUNNING);
            LOG.log(System.Logger.Level.INFO, "{0}: memory verified; {1} runs here", name, vm.name());
        }
        releaseEnded();
    }

    /** The worst gap between progress reports in the guest's first second here, less one period. */
    private long firstSecondStall() {
        GuestProbe probe = vm.vm().probe().orElse(null);
        if (probe == null) {
            return -1;
        }
        long s = maxStallNanos;
        if (s < 0) {
            s = probe.reportStats().maxGapNanos(); // the push ended within the first second: the window so far
        }
        return Math.max(0, s - probe.reportPeriod().toNanos());
    }

    private void requireAccepts(DestinationStateMachine.Event e) {
        machine.refusal(e).ifPresent(why -> {
            throw Status.FAILED_PRECONDITION.withDescription(name + ": " + why).asRuntimeException();
        });
    }

    /**
     * AbortIncomingMigration, idle timeout or a local failure before the VM ran here, or a failed verification
     * (the guest ran here; the source resumes its paused original): delete our VM.
     */
    synchronized void abort(String reason) {
        requireAccepts(DestinationStateMachine.Event.ABORT);
        boolean running = machine.state() == DestinationStateMachine.State.VERIFYING;
        machine.abortRequested(reason);
        if (running) {
            LOG.log(System.Logger.Level.WARNING, "{0}: the source takes the VM back ({1}); stopping and deleting {2}",
                    name, reason, vm.name());
        }
        discard();
        releaseEnded();
    }

    /** Stops every writer into guest memory, then deletes the VM (and its memory). */
    private void discard() {
        PostcopyPager p = pager;
        pager = null;
        if (p != null) {
            p.close();
        }
        if (armed != null) {
            armed.close();
            armed = null;
        }
        MemoryPageWriter w = writer;
        if (w != null) {
            w.close();
        }
        closeAlias();
        vms.remove(vm.name());
    }

    /** Unmaps the alias precopy wrote through; only once nothing writes through it (the writer is closed). */
    private synchronized void closeAlias() {
        if (alias != null) {
            alias.close();
            alias = null;
        }
    }

    private void fail(String reason) {
        if (machine.accepts(DestinationStateMachine.Event.FAIL)) {
            Aftermath a = machine.failed(reason);
            if (a == Aftermath.SOURCE_KEEPS_VM) {
                discard();
            }
        }
    }

    /** Aborts the session if the source went quiet for too long; true if it did. */
    synchronized boolean checkIdle() {
        if (machine.checkIdle()) {
            discard();
            return true;
        }
        return false;
    }

    /**
     * Called periodically: what happens to this session when its source went silent or vanished. Before the
     * switchover (RECEIVING, DEVICE_STATE_RECEIVED) a source that is gone leaves a half-received guest that must
     * never run: FAILED, the VM deleted (a silent source is left to the idle timeout, {@link #checkIdle}). In
     * POSTCOPY or POSTCOPY_PAUSED a source that is gone took the pages not yet here with it: the guest is lost,
     * FAILED with DATA_LOSS, and deleted. In VERIFYING the guest runs here with every page and the memory digest
     * checked: if the source is gone, or silent for {@code timeout}, the guest stays here, FAILED (the comparison
     * after the resume was not done) and released to RUNNING.
     */
    void checkSource(Duration timeout) {
        DestinationStateMachine.State st;
        synchronized (this) {
            st = machine.state();
        }
        if (st.isTerminal() || sourceAddress.isEmpty()) {
            return;
        }
        PeerLiveness live = PeerLiveness.probe(channels.redial(sourceAddress));
        synchronized (this) {
            st = machine.state();
            if (st.isTerminal()) {
                return;
            }
            String gone = "the source agent at " + sourceAddress + " is gone (connection refused)";
            if (st == DestinationStateMachine.State.VERIFYING) {
                Duration idle = machine.idleFor();
                if (live != PeerLiveness.GONE && idle.compareTo(timeout) < 0) {
                    return;
                }
                String why = live == PeerLiveness.GONE ? gone
                        : "the source said nothing for " + ProtoTime.format(idle);
                failureCode = Status.Code.UNAVAILABLE;
                machine.failed(why + " while it verified memory; the guest stays here (" + (digestMatched
                        ? "every page arrived and the memory digest matched" : "the memory digest did NOT match")
                        + "; the comparison after the resume was not done)");
                vm.vm().dirtyTracker().disable();
                vm.hold("", Vm.State.RUNNING);
                LOG.log(System.Logger.Level.WARNING, "{0}: {1}", name, machine.failureReason().orElse(""));
                return;
            }
            if (live != PeerLiveness.GONE) {
                return;
            }
            if (st == DestinationStateMachine.State.POSTCOPY || st == DestinationStateMachine.State.POSTCOPY_PAUSED) {
                PostcopyPager p = pager;
                long missing = p == null ? 0 : p.missingPages();
                failureCode = Status.Code.DATA_LOSS;
                machine.failed("guest lost: " + gone + " with " + missing + " pages still only there; the guest"
                        + " cannot run on and is deleted");
            } else {
                failureCode = Status.Code.UNAVAILABLE;
                machine.failed(gone + " before the switchover; the half-received guest is deleted and never runs");
            }
            LOG.log(System.Logger.Level.WARNING, "{0}: {1}", name, machine.failureReason().orElse(""));
            discard();
        }
    }

    synchronized boolean isTerminal() {
        return machine.isTerminal();
    }

    /** The machine's progress, with the pager's fault figures while the guest runs here by postcopy. */
    private MigrationProgress liveProgress() {
        MigrationProgress p = machine.progress();
        PostcopyPager live = pager;
        if (live == null) {
            return p;
        }
        PostcopyPager.Stats st = live.stats();
        return p.toBuilder().setPostcopyPageFaults(st.faults()).setPostcopyFaultLatencyP50Micros(st.p50Micros())
                .setPostcopyFaultLatencyP99Micros(st.p99Micros()).build();
    }

    synchronized Migration snapshot() {
        Migration.Builder b = Migration.newBuilder().setName(name).setRole(Migration.Role.DESTINATION)
                .setVm(vm.name()).setDestinationVm(vm.name()).setSourceAddress(sourceAddress)
                .setPhase(machine.phase()).setProgress(liveProgress()).setConfig(machine.accepted())
                .setMode(machine.accepted().getMode()).setCreateTime(ProtoTime.toProto(machine.createTime()));
        machine.endTime().ifPresent(t -> b.setEndTime(ProtoTime.toProto(t)));
        machine.failureReason().ifPresent(r -> b.setError(com.google.rpc.Status.newBuilder()
                .setCode(failureCode != null ? failureCode.value()
                        : machine.state() == DestinationStateMachine.State.ABORTED ? Status.Code.CANCELLED.value()
                        : Status.Code.ABORTED.value()).setMessage(r)));
        return b.build();
    }

}
