package dev.ferry.control.migration;

import dev.ferry.control.vm.ManagedVm;
import dev.ferry.control.vm.VmProtos;
import dev.ferry.control.vm.VmRegistry;
import dev.ferry.dataplane.IncomingPages;
import dev.ferry.dataplane.MemoryPageWriter;
import dev.ferry.kvm.devices.WorkloadPort;
import dev.ferry.kvm.memory.GuestMemory;
import dev.ferry.kvm.memory.PageHashes;
import dev.ferry.kvm.vm.MicroVm;
import dev.ferry.state.Section;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateException;
import dev.ferry.v1.CompleteIncomingMigrationRequest;
import dev.ferry.v1.CompleteIncomingMigrationResponse;
import dev.ferry.v1.DeviceStateSection;
import dev.ferry.v1.Migration;
import dev.ferry.v1.TransferDeviceStateRequest;
import dev.ferry.v1.Vm;
import io.grpc.Status;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * The destination's side of one migration: an empty VM shaped like the source's, pages arriving on
 * the data plane, then device state, then the switchover check and resume. Every call is checked
 * against {@link IncomingMigration}; all of them run under this session's lock.
 */
final class IncomingSession implements IncomingPages {
    private static final System.Logger LOG = System.getLogger(IncomingSession.class.getName());
    /** CompleteIncomingMigration waits this much beyond two report periods for the guest's first report. */
    private static final Duration FIRST_REPORT_SLACK = Duration.ofMillis(500);
    private static final Duration FIRST_REPORT_MAX_WAIT = Duration.ofSeconds(5);

    final String name;
    final String token;
    final String sourceAddress;
    private final VmRegistry vms;
    private final ManagedVm vm;
    private final MemoryPageWriter writer;
    private final Collection<SectionSchema<?>> schemas;
    private final IncomingMigration machine; // guarded by this
    private SectionSet deviceState; // guarded by this
    private CompleteIncomingMigrationResponse completed; // guarded by this: the answer to repeat

    IncomingSession(String name, String token, String sourceAddress, VmRegistry vms, ManagedVm vm,
            IncomingMigration machine, Collection<SectionSchema<?>> schemas) {
        this.name = name;
        this.token = token;
        this.sourceAddress = sourceAddress;
        this.vms = vms;
        this.vm = vm;
        this.machine = machine;
        this.schemas = schemas;
        MicroVm v = vm.vm();
        this.writer = new MemoryPageWriter(v.memory(), new PageHashes(v.memory()));
    }

    String vmName() {
        return vm.name();
    }

    // ---- data plane (IncomingPages): called from data-plane stream threads

    @Override
    public GuestMemory memory() {
        return writer.memory();
    }

    @Override
    public PageHashes hashes() {
        return writer.hashes();
    }

    /** Whether page batches may land now (the data plane refuses them otherwise). */
    synchronized boolean acceptsPages() {
        return machine.accepts(IncomingMigration.Event.PAGES_RECEIVED);
    }

    @Override
    public void writePages(long gpa, int pages, ByteBuffer data) {
        writer.writePages(gpa, pages, data);
        synchronized (this) {
            if (machine.accepts(IncomingMigration.Event.PAGES_RECEIVED)) {
                machine.pagesReceived(Math.max(1, machine.progress().getRound()), false, pages, 0);
            }
        }
    }

    @Override
    public void zeroPages(long gpa, long pages) {
        writer.zeroPages(gpa, pages);
        synchronized (this) {
            if (machine.accepts(IncomingMigration.Event.PAGES_RECEIVED)) {
                machine.pagesReceived(Math.max(1, machine.progress().getRound()), false, 0, pages);
            }
        }
    }

    // ---- control plane

    synchronized void transferDeviceState(TransferDeviceStateRequest req) {
        SessionTokens.require(token);
        requireAccepts(IncomingMigration.Event.DEVICE_STATE_RECEIVED);
        CRC32C crc = new CRC32C();
        List<Section> sections = new ArrayList<>();
        long bytes = 0;
        for (DeviceStateSection s : req.getSectionsList()) {
            s.getPayload().asReadOnlyByteBufferList().forEach(crc::update);
            bytes += s.getPayload().size();
            sections.add(new Section(s.getName(), s.getInstanceId(), s.getVersion(), s.getMinReaderVersion(),
                    s.getRequired(), s.getPayload()));
        }
        if ((int) crc.getValue() != req.getCrc32C()) {
            throw Status.DATA_LOSS.withDescription(String.format("device state crc32c 0x%08x does not match the sent 0x%08x",
                    (int) crc.getValue(), req.getCrc32C())).asRuntimeException();
        }
        SectionSet set;
        try {
            set = SectionSet.of(sections);
            for (Section s : set) {
                SectionSchema<?> schema = schemas.stream().filter(x -> x.name().equals(s.name())).findFirst().orElse(null);
                if (schema != null) {
                    schema.decode(s); // version and payload check now, so a bad section fails before switchover
                } else if (s.required()) {
                    throw new StateException(s.name(), s.instanceId(), "required section unknown to this agent");
                }
            }
        } catch (StateException | IllegalArgumentException e) {
            throw Status.FAILED_PRECONDITION.withDescription("device state refused: " + e.getMessage()).asRuntimeException();
        }
        deviceState = set;
        machine.deviceStateReceived(bytes);
    }

    /**
     * Verifies the memory digest, restores device state and runs the vCPUs. A repeat of a call that
     * already succeeded gets the same answer (the source retries when an answer is lost).
     */
    synchronized CompleteIncomingMigrationResponse complete(CompleteIncomingMigrationRequest req) {
        SessionTokens.require(token);
        if (req.getPostcopy()) {
            throw Status.UNIMPLEMENTED.withDescription("postcopy switchover is not available on this agent yet")
                    .asRuntimeException();
        }
        if (completed != null) {
            return completed;
        }
        requireAccepts(IncomingMigration.Event.COMPLETE);
        long received = System.nanoTime();
        long dest = writer.hashes().digest();
        CompleteIncomingMigrationResponse.Builder resp = CompleteIncomingMigrationResponse.newBuilder()
                .setDestinationMemoryDigest(Digests.toProto(dest, writer.memory().totalPages()));
        if (req.hasSourceMemoryDigest()) {
            long src = Digests.fromProto(req.getSourceMemoryDigest());
            if (src != dest) {
                fail("memory digest mismatch: source " + Long.toHexString(src) + ", destination " + Long.toHexString(dest));
                throw Status.DATA_LOSS.withDescription("memory digest mismatch (source " + Long.toHexString(src)
                        + ", destination " + Long.toHexString(dest) + "): the VM stays on the source").asRuntimeException();
            }
            resp.setMemoryVerified(true);
        }
        MicroVm v = vm.vm();
        try {
            v.restoreState(deviceState);
        } catch (StateException e) {
            fail("restore failed: " + e.getMessage());
            throw Status.INTERNAL.withDescription("restoring device state failed: " + e.getMessage()).asRuntimeException();
        }
        long sourceLastReport = v.workloadPort().reportStats().lastReportNanos();
        v.start();
        long resumed = System.nanoTime();
        machine.completeRequested(false);
        resp.setResumeDuration(VmProtos.duration(resumed - received));
        vm.hold("", Vm.State.RUNNING);
        // The pause the guest felt: its last report on the source to its first here (one host clock),
        // less one report period (the gap between two reports when nothing stops the guest).
        WorkloadPort port = v.workloadPort();
        long period = v.config().workload().reportPeriod().toNanos();
        try {
            Duration wait = FIRST_REPORT_SLACK.plusNanos(2 * period);
            if (sourceLastReport != 0 && port.awaitReports(port.reportStats().reports(), 1,
                    wait.compareTo(FIRST_REPORT_MAX_WAIT) < 0 ? wait : FIRST_REPORT_MAX_WAIT)) {
                long first = port.reportStats().firstReportAfterResetNanos();
                if (first > sourceLastReport) {
                    resp.setGuestPause(VmProtos.duration(Math.max(0, first - sourceLastReport - period)));
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        resp.setAnsweredAfterResume(VmProtos.duration(System.nanoTime() - resumed));
        completed = resp.build();
        LOG.log(System.Logger.Level.INFO, "{0}: {1} runs here", name, vm.name());
        return completed;
    }

    private void requireAccepts(IncomingMigration.Event e) {
        machine.refusal(e).ifPresent(why -> {
            throw Status.FAILED_PRECONDITION.withDescription(name + ": " + why).asRuntimeException();
        });
    }

    /** AbortIncomingMigration, idle timeout or a local failure before the VM ran here: delete our VM. */
    synchronized void abort(String reason) {
        machine.abortRequested(reason);
        vms.remove(vm.name());
    }

    private void fail(String reason) {
        if (machine.accepts(IncomingMigration.Event.FAIL)) {
            Aftermath a = machine.failed(reason);
            if (a == Aftermath.SOURCE_KEEPS_VM) {
                vms.remove(vm.name());
            }
        }
    }

    /** Aborts the session if the source went quiet for too long; true if it did. */
    synchronized boolean checkIdle() {
        if (machine.checkIdle()) {
            vms.remove(vm.name());
            return true;
        }
        return false;
    }

    synchronized boolean isTerminal() {
        return machine.isTerminal();
    }

    synchronized Migration snapshot() {
        Migration.Builder b = Migration.newBuilder().setName(name).setRole(Migration.Role.DESTINATION)
                .setVm(vm.name()).setDestinationVm(vm.name()).setSourceAddress(sourceAddress)
                .setPhase(machine.phase()).setProgress(machine.progress()).setConfig(machine.accepted())
                .setMode(machine.accepted().getMode()).setCreateTime(ProtoTime.toProto(machine.createTime()));
        machine.endTime().ifPresent(t -> b.setEndTime(ProtoTime.toProto(t)));
        machine.failureReason().ifPresent(r -> b.setError(com.google.rpc.Status.newBuilder()
                .setCode(machine.state() == IncomingMigration.State.ABORTED ? Status.Code.CANCELLED.value()
                        : Status.Code.ABORTED.value()).setMessage(r)));
        return b.build();
    }

}
