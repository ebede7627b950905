package dev.ferry.process;

import dev.ferry.devices.PortIoBus;
import dev.ferry.devices.Serial16550;
import dev.ferry.devices.WorkloadPort;
import dev.ferry.devices.WorkloadProbe;
import dev.ferry.guest.GuestAbi;
import dev.ferry.guest.GuestLayout;
import dev.ferry.linux.Userfaultfd;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.DirtyTracker;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MissingPageTrap;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateException;
import dev.ferry.state.StateRegistry;
import dev.ferry.vm.Backend;
import dev.ferry.vm.GuestProbe;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.Vcpus;
import dev.ferry.vm.VmConfig;
import dev.ferry.vm.VmConfigSection;
import dev.ferry.vm.VmShape;
import java.util.List;
import java.util.Optional;
import java.util.function.Consumer;

/**
 * The process backend's guest: the workload core runs in one host thread per vCPU, over memfd guest memory
 * mapped as one contiguous range, with the same port-I/O devices a KVM guest has. Dirty pages come from
 * userfaultfd asynchronous write-protect and PAGEMAP_SCAN; postcopy traps missing pages on the same
 * userfaultfd ({@link GuestUffd}).
 *
 * <p>Life cycle as {@link dev.ferry.kvm.vm.MicroVm}: create (boots on {@link #start}) or an empty incoming VM
 * (load memory, {@link #restoreState}, then {@link #start}); {@link #close} always.
 */
public final class ProcessVm implements GuestVm {
    /** Sections every snapshot of a process guest may contain. */
    public static List<SectionSchema<?>> schemas() {
        return List.of(VmConfigSection.SCHEMA, ProcessVcpuSection.SCHEMA, Serial16550.SCHEMA, WorkloadPort.SCHEMA);
    }

    private final VmConfig config;
    private final int tscKhz;
    private final GuestMemory memory;
    private final GuestUffd faults;
    private final TrackedWrites tracker;
    private final PortIoBus bus = new PortIoBus();
    private final WorkloadPort workload;
    private final WorkloadProbe probe;
    private final StateRegistry registry = new StateRegistry();
    private final Vcpus vcpus = new Vcpus(registry);

    private ProcessVm(VmConfig config, int tscKhz, Consumer<String> console, boolean boot) {
        this.config = config;
        this.tscKhz = tscKhz;
        this.memory = GuestMemory.allocate(config.memoryLayout());
        try {
            this.faults = new GuestUffd(memory);
        } catch (RuntimeException e) {
            memory.close();
            throw e;
        }
        this.tracker = new TrackedWrites();
        Serial16550 serial = new Serial16550("com1", GuestAbi.PORT_COM1, console);
        this.workload = new WorkloadPort(config.vcpus());
        this.probe = new WorkloadProbe(workload, memory, config);
        bus.attach(serial);
        bus.attach(workload);
        registry.register(new VmConfigSection(Backend.PROCESS, memory, this::shape));
        for (int i = 0; i < config.vcpus(); i++) {
            ProcessVcpu v = new ProcessVcpu(i, memory, bus, vcpus::fail);
            vcpus.add(v);
            registry.register(new ProcessVcpuSection(v));
        }
        registry.register(serial);
        registry.register(workload);
        if (boot) {
            // The workload needs only its parameters: no page tables, GDT or image, it runs as host code.
            new GuestLayout(config.memoryBytes(), config.vcpus(), config.workload()).writeParameters(memory, tscKhz);
        }
    }

    /** A fresh guest that starts from the beginning when {@link #start()} is called. */
    static ProcessVm create(VmConfig config, int tscKhz, Consumer<String> console) {
        return new ProcessVm(config, tscKhz, console, true);
    }

    /** An empty guest that receives memory and state from elsewhere; its clock ticks at this host's TSC rate. */
    static ProcessVm createIncoming(VmShape shape, int tscKhz, Consumer<String> console) {
        ProcessVm vm = new ProcessVm(shape.config(), tscKhz, console, false);
        Vcpus.startParked(vm.vcpus, vm::close); // its start is part of a downtime: the threads wait ready
        return vm;
    }

    @Override
    public Backend backend() {
        return Backend.PROCESS;
    }

    /** No CPUID: the workload is plain x86-64 code and never asks the CPU what it is. */
    @Override
    public VmShape shape() {
        return new VmShape(config, List.of(), tscKhz);
    }

    @Override
    public Optional<GuestProbe> probe() {
        return Optional.of(probe);
    }

    @Override
    public GuestMemory memory() {
        return memory;
    }

    @Override
    public DirtyTracker dirtyTracker() {
        return tracker;
    }

    @Override
    public MissingPageTrap trapMissingPages() {
        faults.acquireMissing();
        return new MissingPageTrap() {
            private boolean closed;

            @Override
            public Userfaultfd uffd() {
                return faults.uffd();
            }

            @Override
            public boolean placeWriteProtected() {
                return true;
            }

            @Override
            public synchronized void close() {
                if (!closed) {
                    closed = true;
                    faults.releaseMissing();
                }
            }
        };
    }

    @Override
    public List<SectionSchema<?>> stateSchemas() {
        return schemas();
    }

    @Override
    public void start() {
        vcpus.start();
    }

    @Override
    public void pause() throws InterruptedException {
        vcpus.pause();
    }

    @Override
    public void resume() {
        vcpus.resume();
    }

    @Override
    public boolean paused() {
        return vcpus.paused();
    }

    @Override
    public SectionSet saveState() {
        return vcpus.saveState();
    }

    @Override
    public void validateState(SectionSet sections) throws StateException {
        vcpus.validateState(sections);
    }

    @Override
    public void restoreState(SectionSet sections) throws StateException {
        vcpus.restoreState(sections);
    }

    @Override
    public Throwable failure() {
        return vcpus.failure();
    }

    @Override
    public List<Integer> vcpuThreadIds() {
        return vcpus.threadIds();
    }

    /** Port I/O requests served (what a KVM guest's I/O exits would be). */
    @Override
    public long vcpuExits() {
        return vcpus.exits();
    }

    /** Stops the vCPU threads, closes the userfaultfd and unmaps guest memory. Idempotent. */
    @Override
    public void close() {
        // The write tracker holds a /proc/self/pagemap fd of its own, leaked once per tracked VM until this closed it
        // (found by `ferry soak`). It goes before the userfaultfd, which its disable() may still need.
        try {
            tracker.close();
        } finally {
            // The userfaultfd next: a vCPU blocked on a missing page wakes (and reads zeros), so its thread can end.
            faults.close();
        }
        if (vcpus.close()) {
            memory.close();
        }
    }

    /**
     * The write tracker, with the WP registration it needs taken while it is on. Made at the first enable: it
     * checks the registration, which a VM that is never tracked does not pay for.
     */
    private final class TrackedWrites implements DirtyTracker {
        private WriteTracker writes; // guarded by this

        @Override
        public synchronized void enable() {
            if (writes != null && writes.enabled()) {
                return;
            }
            faults.acquireWriteProtect();
            if (writes == null) {
                writes = new WriteTracker(memory, faults.uffd());
            }
            writes.enable();
        }

        @Override
        public synchronized void disable() {
            if (writes == null || !writes.enabled()) {
                return;
            }
            writes.disable();
            faults.releaseWriteProtect();
        }

        @Override
        public synchronized boolean enabled() {
            return writes != null && writes.enabled();
        }

        @Override
        public synchronized DirtyBitmap fetchAndClear() {
            return on().fetchAndClear();
        }

        @Override
        public synchronized DirtyBitmap fetch() {
            return on().fetch();
        }

        /** Closes the tracker (its pagemap fd) if one was made; tracking ends with it. */
        synchronized void close() {
            if (writes != null) {
                try {
                    if (writes.enabled()) {
                        disable(); // releases the write-protect registration it took
                    }
                } finally {
                    writes.close();
                }
            }
        }

        private WriteTracker on() {
            if (writes == null || !writes.enabled()) {
                throw new IllegalStateException("dirty tracking is not enabled");
            }
            return writes;
        }
    }
}
