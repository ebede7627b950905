package dev.ferry.control.vm;

import com.google.protobuf.Empty;
import dev.ferry.control.grpc.Calls;
import dev.ferry.backends.BackendUnavailableException;
import dev.ferry.backends.Backends;
import dev.ferry.guest.GuestLayout;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.vm.GuestBackend;
import dev.ferry.vm.GuestProbe;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.IncompatibleShapeException;
import dev.ferry.vm.VmConfig;
import dev.ferry.v1.CheckVmMemoryRequest;
import dev.ferry.v1.CheckVmMemoryResponse;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.DeleteVmRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.ListVmsRequest;
import dev.ferry.v1.ListVmsResponse;
import dev.ferry.v1.PauseVmRequest;
import dev.ferry.v1.RestoreVmRequest;
import dev.ferry.v1.ResumeVmRequest;
import dev.ferry.v1.SnapshotVmRequest;
import dev.ferry.v1.SnapshotVmResponse;
import dev.ferry.control.restore.OnDemandRestore;
import dev.ferry.state.StateException;
import dev.ferry.state.UnsupportedStateFormatException;
import dev.ferry.vm.Snapshot;
import java.io.IOException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;

/**
 * ferry.v1.VmService: create, inspect, pause, resume, delete and self-check VMs on this agent, and snapshot and
 * restore them within its {@link SnapshotStore}.
 */
public final class VmServiceImpl extends VmServiceGrpc.VmServiceImplBase {
    private static final System.Logger LOG = System.getLogger(VmServiceImpl.class.getName());
    private static final Duration FILL_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration CHECK_TIMEOUT = Duration.ofSeconds(120);

    private final VmRegistry vms;
    private final Backends backends;
    private final Consumer<String> console;
    private volatile SnapshotStore snapshots = SnapshotStore.none();

    public VmServiceImpl(VmRegistry vms, Backends backends, Consumer<String> console) {
        this.vms = vms;
        this.backends = backends;
        this.console = console;
    }

    /** Where SnapshotVm writes and RestoreVm reads (default: nowhere, both refused). */
    public void snapshotsIn(SnapshotStore store) {
        this.snapshots = store;
    }

    @Override
    public void createVm(CreateVmRequest req, StreamObserver<Vm> out) {
        Calls.unary(out, () -> {
            String asked = VmRequests.check(req);
            String name = asked != null ? asked : VmRegistry.nameOf("vm-" + UUID.randomUUID().toString().substring(0, 8));
            if (vms.exists(name)) {
                throw Status.ALREADY_EXISTS.withDescription(name + " already exists").asRuntimeException();
            }
            Vm spec = req.getVm();
            long memory = spec.getMemoryBytes();
            int vcpus = spec.getVcpuCount();
            WorkloadSpec workload = VmProtos.fromProto(spec.getWorkload(),
                    Math.min(256L << 20, GuestLayout.maxWorkingSet(memory) / 4096 * 4096));
            VmConfig config;
            try {
                List<Long> slotSizes = spec.getMemorySlotSizesBytesList();
                if (!slotSizes.isEmpty()) {
                    long first = slotSizes.get(0);
                    if (slotSizes.stream().anyMatch(s -> s != first)) {
                        throw new IllegalArgumentException("memory_slot_sizes_bytes must be equal sizes summing to memory_bytes");
                    }
                    config = new VmConfig(vcpus, memory, slotSizes.size(), workload);
                } else {
                    config = VmConfig.of(vcpus, memory, workload);
                }
            } catch (IllegalArgumentException e) {
                throw Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException();
            }
            GuestBackend backend;
            try {
                backend = spec.getBackend() == dev.ferry.v1.Backend.BACKEND_UNSPECIFIED ? backends.preferred()
                        : backends.require(VmProtos.fromProto(spec.getBackend()));
            } catch (BackendUnavailableException e) {
                throw Status.FAILED_PRECONDITION.withDescription(e.getMessage()).asRuntimeException();
            }
            ManagedVm m;
            try (GuestAdmission.Reservation held = vms.admit(name, memory)) {
                GuestVm vm = backend.create(config, console);
                m = vms.add(name, vm, Vm.State.CREATING, spec.getLabelsMap());
            }
            try {
                m.vm().start();
                if (!m.vm().probe().orElseThrow().awaitFillDone(FILL_TIMEOUT)) {
                    m.vm().throwIfFailed();
                    throw Status.DEADLINE_EXCEEDED.withDescription("guest did not finish its fill").asRuntimeException();
                }
                if (Context.current().isCancelled()) { // the caller will never learn of this VM: do not keep it
                    throw Status.CANCELLED.withDescription("call cancelled or past its deadline before " + name
                            + " was ready; not created").asRuntimeException();
                }
            } catch (RuntimeException | InterruptedException e) {
                vms.remove(name);
                throw e;
            }
            m.setState(Vm.State.RUNNING);
            LOG.log(System.Logger.Level.INFO, "created {0}: {1} vCPUs, {2} MiB, {3} backend", name, vcpus, memory >> 20,
                    backend.kind().cliName());
            return VmProtos.toProto(m);
        });
    }

    @Override
    public void getVm(GetVmRequest req, StreamObserver<Vm> out) {
        Calls.unary(out, () -> VmProtos.toProto(vms.get(VmRequests.check(req))));
    }

    @Override
    public void listVms(ListVmsRequest req, StreamObserver<ListVmsResponse> out) {
        Calls.unary(out, () -> {
            VmRequests.check(req);
            List<ManagedVm> all = vms.list();
            int start = Pages.start(req.getPageToken(), all.size());
            int size = Pages.size(req.getPageSize());
            ListVmsResponse.Builder b = ListVmsResponse.newBuilder();
            for (int i = start; i < Math.min(all.size(), start + size); i++) {
                b.addVms(VmProtos.toProto(all.get(i)));
            }
            if (start + size < all.size()) {
                b.setNextPageToken(Pages.token(start + size));
            }
            return b.build();
        });
    }

    @Override
    public void pauseVm(PauseVmRequest req, StreamObserver<Vm> out) {
        Calls.unary(out, () -> {
            ManagedVm m = requireIdle(VmRequests.check(req), "pause");
            m.vm().pause();
            m.setState(Vm.State.PAUSED);
            return VmProtos.toProto(m);
        });
    }

    @Override
    public void resumeVm(ResumeVmRequest req, StreamObserver<Vm> out) {
        Calls.unary(out, () -> {
            ManagedVm m = requireIdle(VmRequests.check(req), "resume");
            m.vm().resume();
            m.setState(Vm.State.RUNNING);
            return VmProtos.toProto(m);
        });
    }

    @Override
    public void deleteVm(DeleteVmRequest req, StreamObserver<Empty> out) {
        Calls.unary(out, () -> {
            requireIdle(VmRequests.check(req), "delete");
            vms.remove(req.getName());
            return Empty.getDefaultInstance();
        });
    }

    @Override
    public void checkVmMemory(CheckVmMemoryRequest req, StreamObserver<CheckVmMemoryResponse> out) {
        Calls.unary(out, () -> {
            ManagedVm m = vms.get(VmRequests.check(req));
            boolean runsHere = m.state() == Vm.State.RUNNING || m.state() == Vm.State.MIGRATING_OUT
                    || m.state() == Vm.State.MIGRATING_IN && !m.vm().paused(); // postcopy: runs here already
            if (!runsHere) {
                throw Status.FAILED_PRECONDITION.withDescription(req.getName() + " is " + m.state()
                        + ": the guest checks its own memory, so it must be running").asRuntimeException();
            }
            GuestProbe probe = m.vm().probe().orElseThrow(() -> Status.UNIMPLEMENTED
                    .withDescription(req.getName() + "'s guest cannot check its own memory").asRuntimeException());
            long t0 = System.nanoTime();
            long wrong;
            try {
                wrong = probe.selfCheck(CHECK_TIMEOUT);
            } catch (TimeoutException e) {
                m.vm().throwIfFailed();
                throw Status.DEADLINE_EXCEEDED.withDescription("guest self-check did not finish").asRuntimeException();
            }
            return CheckVmMemoryResponse.newBuilder().setCheckedPages(probe.workingSetPages()).setWrongPages(wrong)
                    .setDuration(VmProtos.duration(System.nanoTime() - t0)).build();
        });
    }

    @Override
    public void snapshotVm(SnapshotVmRequest req, StreamObserver<SnapshotVmResponse> out) {
        Calls.unary(out, () -> {
            String name = VmRequests.check(req);
            ManagedVm m = vms.get(name);
            Path dir = snapshots.resolve("snapshot_directory", req.getSnapshotDirectory());
            if (Files.exists(dir)) {
                throw Status.ALREADY_EXISTS.withDescription(dir + " already exists").asRuntimeException();
            }
            if (!m.tryBusy("a snapshot to " + dir)) {
                throw Status.FAILED_PRECONDITION.withDescription("cannot snapshot " + name + ": " + m.holder()
                        + " holds it").asRuntimeException();
            }
            try {
                Vm.State state = m.state();
                if (state != Vm.State.RUNNING && state != Vm.State.PAUSED) {
                    throw Status.FAILED_PRECONDITION.withDescription(name + " is " + state
                            + "; only a RUNNING or PAUSED VM can be snapshotted").asRuntimeException();
                }
                return snapshot(m, dir, state == Vm.State.RUNNING);
            } finally {
                m.notBusy();
            }
        });
    }

    /** Writes into a hidden sibling and renames it into place: a failed snapshot leaves nothing restorable. */
    private SnapshotVmResponse snapshot(ManagedVm m, Path dir, boolean running) throws InterruptedException {
        Path partial = dir.resolveSibling("." + dir.getFileName() + ".partial-" + UUID.randomUUID().toString().substring(0, 8));
        long t0 = System.nanoTime();
        long paused = 0;
        long size = 0;
        if (running) {
            m.vm().pause();
            m.setState(Vm.State.PAUSED);
        }
        try {
            Files.createDirectories(dir.getParent());
            Snapshot.write(m.vm(), partial, m.labels());
            try (var files = Files.list(partial)) {
                for (Path f : files.toList()) {
                    size += Files.size(f);
                }
            }
            Files.move(partial, dir, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            deleteQuietly(partial);
            throw snapshotFailure(dir, e);
        } finally {
            if (running) {
                m.vm().resume();
                m.setState(Vm.State.RUNNING);
                paused = System.nanoTime() - t0;
            }
        }
        LOG.log(System.Logger.Level.INFO, "{0}: snapshot written to {1} ({2} MiB)", m.name(), dir, size >> 20);
        return SnapshotVmResponse.newBuilder().setSnapshotDirectory(dir.toString()).setSizeBytes(size)
                .setPauseDuration(VmProtos.duration(paused)).setVm(VmProtos.toProto(m)).build();
    }

    private static io.grpc.StatusRuntimeException snapshotFailure(Path dir, IOException e) {
        String why = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
        if (e instanceof FileAlreadyExistsException) {
            return Status.ALREADY_EXISTS.withDescription(dir + " already exists").asRuntimeException();
        }
        if (why.contains("No space left on device") || why.contains("Disk quota exceeded")) {
            return Status.RESOURCE_EXHAUSTED.withDescription("snapshot to " + dir + " failed, nothing was kept, the VM "
                    + "runs on: " + why).asRuntimeException();
        }
        if (e instanceof java.nio.file.AccessDeniedException) {
            return Status.FAILED_PRECONDITION.withDescription("snapshot to " + dir + " failed: permission denied")
                    .asRuntimeException();
        }
        return Status.INTERNAL.withDescription("snapshot to " + dir + " failed, nothing was kept: " + why)
                .asRuntimeException();
    }

    private static void deleteQuietly(Path dir) {
        try (var files = Files.list(dir)) {
            for (Path f : files.toList()) {
                Files.deleteIfExists(f);
            }
            Files.deleteIfExists(dir);
        } catch (IOException ignored) {
            // best effort: a hidden .partial directory is never restored
        }
    }

    @Override
    public void restoreVm(RestoreVmRequest req, StreamObserver<Vm> out) {
        Calls.unary(out, () -> {
            String asked = VmRequests.check(req);
            String name = asked != null ? asked : VmRegistry.nameOf("vm-" + UUID.randomUUID().toString().substring(0, 8));
            Path dir = snapshots.resolve("snapshot_directory", req.getSnapshotDirectory());
            if (vms.exists(name)) {
                throw Status.ALREADY_EXISTS.withDescription(name + " already exists").asRuntimeException();
            }
            try {
                long memory = Files.size(dir.resolve(Snapshot.MEMORY_FILE));
                GuestBackend backend;
                try {
                    backend = backends.require(Snapshot.backendOf(dir));
                } catch (BackendUnavailableException e) {
                    throw Status.FAILED_PRECONDITION.withDescription("the snapshot in " + dir + " was saved by a backend "
                            + "this agent cannot run: " + e.getMessage()).asRuntimeException();
                }
                Map<String, String> labels = snapshotLabels(dir);
                ManagedVm m;
                try (GuestAdmission.Reservation held = vms.admit(name, memory)) {
                    if (req.getOnDemand()) {
                        OnDemandRestore od = OnDemandRestore.start(dir, backend, console);
                        m = vms.add(name, od.vm(), Vm.State.RUNNING, labels);
                        m.tryBusy("a restore loading from " + dir);
                        m.attach(od.loadRestInBackground(dir, m::notBusy, e -> {
                            m.setError("loading from " + dir + " failed: " + e.getMessage());
                            LOG.log(System.Logger.Level.WARNING, "{0}: loading from {1} failed: {2}", name, dir,
                                    e.getMessage());
                        }));
                    } else {
                        m = vms.add(name, Snapshot.restore(dir, backend, console), Vm.State.CREATING, labels);
                        m.vm().start();
                        m.setState(Vm.State.RUNNING);
                    }
                }
                LOG.log(System.Logger.Level.INFO, "restored {0} from {1}{2}", name, dir, req.getOnDemand() ? " (on demand)" : "");
                return VmProtos.toProto(m);
            } catch (NoSuchFileException e) {
                throw Status.NOT_FOUND.withDescription("no snapshot in " + dir + " (" + e.getFile() + " is missing)")
                        .asRuntimeException();
            } catch (UnsupportedStateFormatException e) {
                throw Status.FAILED_PRECONDITION.withDescription("cannot restore " + dir + ": " + e.getMessage())
                        .asRuntimeException();
            } catch (IncompatibleShapeException e) { // the guest cannot run here as it ran where it was saved
                throw Status.FAILED_PRECONDITION.withDescription("cannot restore " + dir + " on this host ("
                        + e.field() + "): " + e.getMessage()).asRuntimeException();
            } catch (StateException | IOException e) {
                throw Status.DATA_LOSS.withDescription("cannot restore " + dir + ": " + e.getMessage()).asRuntimeException();
            }
        });
    }

    /** The labels SnapshotVm recorded: none in a snapshot from before it did. */
    private static Map<String, String> snapshotLabels(Path dir) throws IOException {
        try {
            return VmRequests.labels(Snapshot.MANIFEST_FILE + " labels", Snapshot.labelsOf(dir));
        } catch (StatusRuntimeException e) { // SnapshotVm wrote checked labels: these were changed on disk
            throw Status.DATA_LOSS.withDescription("cannot restore " + dir + ": " + e.getStatus().getDescription())
                    .asRuntimeException();
        }
    }

    private ManagedVm requireIdle(String name, String what) {
        ManagedVm m = vms.get(name);
        String holder = m.holder();
        // A restore still loading pages may be deleted (its loader stops first), nothing else.
        if (!holder.isEmpty() && !(what.equals("delete") && holder.startsWith("a restore"))) {
            throw Status.FAILED_PRECONDITION.withDescription("cannot " + what + " " + name + ": "
                    + holder + " holds it").asRuntimeException();
        }
        return m;
    }
}
