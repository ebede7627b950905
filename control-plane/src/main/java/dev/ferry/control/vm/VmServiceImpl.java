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
import dev.ferry.vm.VmConfig;
import dev.ferry.v1.CheckVmMemoryRequest;
import dev.ferry.v1.CheckVmMemoryResponse;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.DeleteVmRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.ListVmsRequest;
import dev.ferry.v1.ListVmsResponse;
import dev.ferry.v1.PauseVmRequest;
import dev.ferry.v1.ResumeVmRequest;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;

/** ferry.v1.VmService: create, inspect, pause, resume, delete and self-check VMs on this agent. */
public final class VmServiceImpl extends VmServiceGrpc.VmServiceImplBase {
    private static final System.Logger LOG = System.getLogger(VmServiceImpl.class.getName());
    private static final Duration FILL_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration CHECK_TIMEOUT = Duration.ofSeconds(120);

    private final VmRegistry vms;
    private final Backends backends;
    private final Consumer<String> console;

    public VmServiceImpl(VmRegistry vms, Backends backends, Consumer<String> console) {
        this.vms = vms;
        this.backends = backends;
        this.console = console;
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
                m = vms.add(name, vm, Vm.State.CREATING);
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

    private ManagedVm requireIdle(String name, String what) {
        ManagedVm m = vms.get(name);
        if (!m.migration().isEmpty()) {
            throw Status.FAILED_PRECONDITION.withDescription("cannot " + what + " " + name + ": "
                    + m.migration() + " holds it").asRuntimeException();
        }
        return m;
    }
}
