package dev.ferry.control.vm;

import dev.ferry.vm.GuestVm;
import dev.ferry.v1.Vm;
import io.grpc.Status;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.regex.Pattern;

/** The VMs on this agent, by resource name {@code vms/{id}}. */
public final class VmRegistry implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(VmRegistry.class.getName());
    public static final String PREFIX = "vms/";
    private static final Pattern ID = Pattern.compile("[a-z]([a-z0-9-]{0,61}[a-z0-9])?");

    // Concurrent map: lookups come from every gRPC thread; creation/removal are atomic per name.
    private final ConcurrentMap<String, ManagedVm> vms = new ConcurrentHashMap<>();
    // Taken out by removeLater, not closed yet: still mapped, so still counted against the host's memory.
    private final java.util.Set<ManagedVm> closing = ConcurrentHashMap.newKeySet();
    private final GuestAdmission admission;

    /** A registry with the default limits, judged against this host's /proc/meminfo. */
    public VmRegistry() {
        this(GuestAdmission.Limits.DEFAULT, HostMemory.proc());
    }

    public VmRegistry(GuestAdmission.Limits limits, HostMemory host) {
        this.admission = new GuestAdmission(limits, host,
                () -> java.util.stream.Stream.concat(vms.values().stream(), closing.stream())
                        .mapToLong(m -> m.vm().shape().config().memoryBytes()).sum(),
                () -> vms.size() + closing.size());
    }

    /**
     * Admits one more VM of {@code memoryBytes} before it is allocated, or fails RESOURCE_EXHAUSTED. Close the
     * reservation after {@link #add} (or when the attempt fails).
     */
    public GuestAdmission.Reservation admit(String what, long memoryBytes) {
        return admission.admit(what, memoryBytes);
    }

    public GuestAdmission admission() {
        return admission;
    }

    /** Checks an id against RFC 1123 label rules (what Kubernetes names allow). */
    public static String nameOf(String id) {
        if (id == null || !ID.matcher(id).matches()) {
            throw Status.INVALID_ARGUMENT.withDescription("VM id '" + id
                    + "' must be 1-63 lowercase letters, digits or '-', starting with a letter").asRuntimeException();
        }
        return PREFIX + id;
    }

    /** Registers {@code vm} under {@code name}; closes it and fails with ALREADY_EXISTS if taken. */
    public ManagedVm add(String name, GuestVm vm, Vm.State state) {
        return add(name, vm, state, java.util.Map.of());
    }

    /** As {@link #add(String, GuestVm, Vm.State)}, with Vm.labels (already checked). */
    public ManagedVm add(String name, GuestVm vm, Vm.State state, java.util.Map<String, String> labels) {
        ManagedVm m = new ManagedVm(name, vm, state, labels);
        if (vms.putIfAbsent(name, m) != null) {
            vm.close();
            throw Status.ALREADY_EXISTS.withDescription(name + " already exists").asRuntimeException();
        }
        return m;
    }

    public boolean exists(String name) {
        return vms.containsKey(name);
    }

    public Optional<ManagedVm> find(String name) {
        return Optional.ofNullable(vms.get(name));
    }

    /** The VM or NOT_FOUND. */
    public ManagedVm get(String name) {
        ManagedVm m = vms.get(name);
        if (m == null) {
            throw Status.NOT_FOUND.withDescription(name + " not found on this agent").asRuntimeException();
        }
        return m;
    }

    public List<ManagedVm> list() {
        List<ManagedVm> l = new ArrayList<>(vms.values());
        l.sort(Comparator.comparing(ManagedVm::createTime).thenComparing(ManagedVm::name));
        return l;
    }

    /** Removes and closes the VM (its vCPU threads, fds and memory). */
    public void remove(String name) {
        removeLater(name).run();
    }

    /**
     * Takes the VM out at once (no call finds it any more) and returns what closes it, which the caller runs when
     * it is done with everything more urgent: unmapping a large guest's memory takes tens of milliseconds. Until
     * then its memory still counts against the host's. Running it more than once does nothing more.
     */
    public Runnable removeLater(String name) {
        ManagedVm m = vms.remove(name);
        if (m == null) {
            return () -> { };
        }
        closing.add(m);
        return () -> close(m);
    }

    private void close(ManagedVm m) {
        if (!closing.remove(m)) {
            return; // closed already
        }
        AutoCloseable a = m.detach();
        if (a != null) {
            try {
                a.close();
            } catch (Exception e) {
                LOG.log(System.Logger.Level.WARNING, "{0}: closing its loader failed: {1}", m.name(), e.getMessage());
            }
        }
        m.vm().close();
    }

    @Override
    public void close() {
        for (String n : List.copyOf(vms.keySet())) {
            remove(n);
        }
        for (ManagedVm m : List.copyOf(closing)) {
            close(m);
        }
    }
}
