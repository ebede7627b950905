package dev.ferry.backends;

import dev.ferry.kvm.vm.KvmBackend;
import dev.ferry.kvm.vm.MicroVm;
import dev.ferry.state.SectionSchema;
import dev.ferry.kvm.sys.KvmSystem;
import dev.ferry.process.ProcessBackend;
import dev.ferry.vm.Backend;
import dev.ferry.vm.GuestBackend;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.Supplier;

/**
 * The backends an agent or a command runs guests on, opened (and so probed) once. {@code auto} offers
 * every backend that works here, KVM first; naming one offers only that one.
 */
public final class Backends {
    /** System property naming another KVM device node than /dev/kvm; a missing one stands for a host without KVM. */
    public static final String KVM_DEVICE_PROPERTY = KvmSystem.DEVICE_PROPERTY;

    /** What the user asked for: {@code --backend auto|kvm|process}. */
    public enum Choice {
        AUTO, KVM, PROCESS;

        public static Choice parse(String s) {
            return switch (s) {
                case "auto" -> AUTO;
                case "kvm" -> KVM;
                case "process" -> PROCESS;
                default -> throw new IllegalArgumentException("unknown backend '" + s + "' (auto, kvm or process)");
            };
        }
    }

    private final Map<Backend, GuestBackend> open;
    private final Map<Backend, String> unavailable;
    private final Backend preferred;

    private Backends(Map<Backend, GuestBackend> open, Map<Backend, String> unavailable, Backend preferred) {
        this.open = open;
        this.unavailable = unavailable;
        this.preferred = preferred;
    }

    /**
     * Opens what {@code choice} names.
     *
     * @throws BackendUnavailableException if nothing asked for can run here: one line on what is missing
     */
    public static Backends open(Choice choice) {
        Map<Backend, GuestBackend> open = new EnumMap<>(Backend.class);
        Map<Backend, String> unavailable = new EnumMap<>(Backend.class);
        List<Backend> wanted = switch (choice) {
            case AUTO -> List.of(Backend.KVM, Backend.PROCESS);
            case KVM -> List.of(Backend.KVM);
            case PROCESS -> List.of(Backend.PROCESS);
        };
        for (Backend b : wanted) {
            try {
                open.put(b, opener(b).get());
            } catch (BackendUnavailableException e) {
                unavailable.put(b, e.getMessage());
            }
        }
        if (open.isEmpty()) {
            List<String> why = new ArrayList<>();
            unavailable.forEach((b, reason) -> why.add(reason));
            throw new BackendUnavailableException(choice == Choice.AUTO
                    ? "no backend can run guests here: " + String.join("; ", why)
                    : why.get(0));
        }
        return new Backends(open, unavailable, wanted.stream().filter(open::containsKey).findFirst().orElseThrow());
    }

    /** Only {@code backend} (tests, and a single-backend tool such as a restore). */
    public static Backends of(GuestBackend backend) {
        Map<Backend, GuestBackend> open = new EnumMap<>(Backend.class);
        open.put(backend.kind(), backend);
        return new Backends(open, new EnumMap<>(Backend.class), backend.kind());
    }

    private static Supplier<GuestBackend> opener(Backend b) {
        return switch (b) {
            case KVM -> Backends::openKvm;
            case PROCESS -> Backends::openProcess;
        };
    }

    private static GuestBackend openProcess() {
        Optional<String> why = ProcessBackend.unavailableReason();
        if (why.isPresent()) {
            throw new BackendUnavailableException("process backend: " + why.get());
        }
        return ProcessBackend.open();
    }

    private static GuestBackend openKvm() {
        Optional<String> why = KvmSystem.unavailableReason();
        if (why.isPresent()) {
            throw new BackendUnavailableException("kvm backend: " + why.get() + "; use --backend process");
        }
        try {
            return new KvmBackend();
        } catch (RuntimeException e) {
            throw new BackendUnavailableException("kvm backend: KVM does not work here (" + e.getMessage()
                    + "); use --backend process");
        }
    }

    /** Every state section either backend saves, for decoding and dumping any state file (nothing is opened). */
    public static List<SectionSchema<?>> allSchemas() {
        List<SectionSchema<?>> all = new ArrayList<>(MicroVm.schemas());
        for (SectionSchema<?> s : ProcessBackend.schemas()) {
            if (all.stream().noneMatch(x -> x.name().equals(s.name()))) {
                all.add(s);
            }
        }
        return all;
    }

    /** The backend new guests run on unless they ask for another. */
    public GuestBackend preferred() {
        return open.get(preferred);
    }

    public Optional<GuestBackend> get(Backend kind) {
        return Optional.ofNullable(open.get(kind));
    }

    /**
     * The backend {@code kind}, or a {@link BackendUnavailableException} saying why it cannot run here
     * (not available on this host, or not offered by this agent's --backend).
     */
    public GuestBackend require(Backend kind) {
        GuestBackend b = open.get(kind);
        if (b != null) {
            return b;
        }
        String why = unavailable.get(kind);
        throw new BackendUnavailableException(why != null ? why
                : kind.cliName() + " backend: not offered here (this agent runs only " + offered() + ")");
    }

    /** The backends offered, preferred first. */
    public List<Backend> offered() {
        List<Backend> l = new ArrayList<>(open.keySet());
        l.remove(preferred);
        l.add(0, preferred);
        return Collections.unmodifiableList(l);
    }
}
