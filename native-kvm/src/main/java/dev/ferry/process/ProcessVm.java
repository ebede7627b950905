package dev.ferry.process;

import dev.ferry.devices.PortIoBus;
import dev.ferry.devices.Serial16550;
import dev.ferry.devices.WorkloadPort;
import dev.ferry.devices.WorkloadProbe;
import dev.ferry.guest.GuestAbi;
import dev.ferry.guest.GuestLayout;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.DirtyTracker;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MissingPageTrap;
import dev.ferry.linux.Userfaultfd;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateException;
import dev.ferry.state.StateRegistry;
import dev.ferry.vm.Backend;
import dev.ferry.vm.GuestProbe;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.VmConfig;
import dev.ferry.vm.VmConfigSection;
import dev.ferry.vm.VmShape;
import java.util.ArrayList;
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
    private final List<ProcessVcpu> vcpus = new ArrayList<>();
    private volatile Throwable failure;
    // Guarded by this.
    private boolean started;
    private boolean paused;
    private boolean closed;

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
            ProcessVcpu v = new ProcessVcpu(i, memory, bus, this::fail);
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
        return new ProcessVm(shape.config(), tscKhz, console, false);
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
    public synchronized void start() {
        checkOpen();
        if (started) {
            throw new IllegalStateException("VM already started");
        }
        started = true;
        for (ProcessVcpu v : vcpus) {
            v.start();
        }
    }

    private void fail(Throwable t) {
        if (failure == null) {
            failure = t;
        }
        // One vCPU failing stops the VM: the others must not keep running on a broken guest.
        for (ProcessVcpu v : vcpus) {
            v.requestPause();
        }
    }

    @Override
    public synchronized void pause() throws InterruptedException {
        checkOpen();
        for (ProcessVcpu v : vcpus) {
            v.requestPause();
        }
        for (ProcessVcpu v : vcpus) {
            v.awaitPaused();
        }
        paused = true;
    }

    @Override
    public synchronized void resume() {
        checkOpen();
        throwIfFailed();
        for (ProcessVcpu v : vcpus) {
            v.resume();
        }
        paused = false;
    }

    @Override
    public synchronized boolean paused() {
        return paused || !started;
    }

    @Override
    public synchronized SectionSet saveState() {
        requirePaused("save state");
        return registry.save();
    }

    @Override
    public void validateState(SectionSet sections) throws StateException {
        registry.validate(sections);
    }

    @Override
    public synchronized void restoreState(SectionSet sections) throws StateException {
        requirePaused("restore state");
        registry.restore(sections);
    }

    private void requirePaused(String what) {
        checkOpen();
        if (started && !paused) {
            throw new IllegalStateException("cannot " + what + " while the VM runs: pause it first");
        }
    }

    @Override
    public Throwable failure() {
        return failure;
    }

    @Override
    public synchronized List<Integer> vcpuThreadIds() {
        return started ? vcpus.stream().map(ProcessVcpu::tid).toList() : List.of();
    }

    /** Port I/O requests served (what a KVM guest's I/O exits would be). */
    @Override
    public long vcpuExits() {
        long n = 0;
        for (ProcessVcpu v : vcpus) {
            n += v.exits();
        }
        return n;
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("VM is closed");
        }
    }

    /** Stops the vCPU threads, closes the userfaultfd and unmaps guest memory. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        boolean interrupted = false;
        for (ProcessVcpu v : vcpus) {
            try {
                v.stop();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        faults.close(); // wakes any thread blocked on a missing page (it then reads zeros)
        memory.close();
        if (interrupted) {
            Thread.currentThread().interrupt();
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

        private WriteTracker on() {
            if (writes == null || !writes.enabled()) {
                throw new IllegalStateException("dirty tracking is not enabled");
            }
            return writes;
        }
    }
}
