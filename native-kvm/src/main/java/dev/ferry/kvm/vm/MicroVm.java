package dev.ferry.kvm.vm;

import dev.ferry.devices.PortIoBus;
import dev.ferry.devices.Serial16550;
import dev.ferry.devices.WorkloadPort;
import dev.ferry.devices.WorkloadProbe;
import dev.ferry.guest.GuestAbi;
import dev.ferry.guest.GuestLayout;
import dev.ferry.kvm.sys.KvmCpuid2;
import dev.ferry.kvm.sys.KvmCpuidEntry2;
import dev.ferry.kvm.sys.KvmIoctls;
import dev.ferry.kvm.sys.KvmMpState;
import dev.ferry.kvm.sys.KvmRegs;
import dev.ferry.kvm.sys.KvmSegment;
import dev.ferry.kvm.sys.KvmSregs;
import dev.ferry.kvm.sys.KvmSystem;
import dev.ferry.kvm.sys.KvmVcpu;
import dev.ferry.kvm.sys.KvmVm;
import dev.ferry.linux.NativeException;
import dev.ferry.memory.DirtyTracker;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.MissingPageTrap;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateException;
import dev.ferry.state.StateRegistry;
import dev.ferry.vm.Backend;
import dev.ferry.vm.CpuidLeaf;
import dev.ferry.vm.GuestProbe;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.HostTsc;
import dev.ferry.vm.IncompatibleShapeException;
import dev.ferry.vm.Vcpus;
import dev.ferry.vm.VmConfig;
import dev.ferry.vm.VmConfigSection;
import dev.ferry.vm.VmShape;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.function.Consumer;

/**
 * The KVM backend's guest: KVM VM and vCPUs, guest memory, the port-I/O devices and their state. Each
 * vCPU runs on its own thread; {@link #pause()} stops them all (kicking any that are inside
 * KVM_RUN), after which the whole state can be saved or restored.
 *
 * <p>Life cycle: {@link #create} (fresh guest, boots on {@link #start}) or {@link #createIncoming}
 * (empty guest; load memory, {@link #restoreState}, then {@link #start}); {@link #close} always.
 */
public final class MicroVm implements GuestVm {
    /** Sections every snapshot of a micro-VM may contain, for decoding and JSON dumps. */
    public static List<SectionSchema<?>> schemas() {
        return List.of(VmConfigSection.SCHEMA, VmSection.SCHEMA, VcpuSection.SCHEMA, Serial16550.SCHEMA,
                WorkloadPort.SCHEMA);
    }

    private static final long TSS_ADDR = 0xfffbd000L;
    private static volatile int[] savableMsrs;

    private final VmConfig config;
    private final KvmSystem kvm;
    private final KvmVm vm;
    private final GuestMemory memory;
    private final DirtyLog dirtyLog;
    private final List<KvmVcpu> vcpus = new ArrayList<>();
    private final PortIoBus bus = new PortIoBus();
    private final Serial16550 serial;
    private final WorkloadPort workload;
    private final WorkloadProbe probe;
    private final StateRegistry registry = new StateRegistry();
    private final Vcpus runners = new Vcpus(registry);
    private final List<KvmCpuidEntry2> cpuid;
    private final boolean kvmTscKhz; // KVM_GET_TSC_KHZ works here

    private MicroVm(VmConfig config, List<KvmCpuidEntry2> cpuidOrNull, Consumer<String> console, boolean boot) {
        this.config = config;
        this.kvm = KvmSystem.open();
        KvmVm v = null;
        GuestMemory m = null;
        try {
            v = kvm.createVm();
            m = GuestMemory.allocate(config.memoryLayout());
        } catch (RuntimeException e) {
            if (v != null) {
                v.close();
            }
            kvm.close();
            throw e;
        }
        this.vm = v;
        this.memory = m;
        this.kvmTscKhz = kvm.checkExtension(KvmIoctls.KVM_CAP_GET_TSC_KHZ) > 0;
        this.dirtyLog = new DirtyLog(vm, memory);
        this.serial = new Serial16550("com1", GuestAbi.PORT_COM1, console);
        this.workload = new WorkloadPort(config.vcpus());
        this.probe = new WorkloadProbe(workload, memory, config);
        try {
            vm.setTssAddr(TSS_ADDR);
            vm.createIrqchip();
            vm.createPit2(0);
            for (MemoryRegion r : memory.regions()) {
                vm.setUserMemoryRegion(r.slot(), 0, r.guestPhysAddr(), r.size(), r.mapping().address());
            }
            this.cpuid = cpuidOrNull != null ? cpuidOrNull : kvm.supportedCpuid().entries();
            KvmCpuid2 cpuid2 = KvmCpuid2.of(cpuid);
            for (int i = 0; i < config.vcpus(); i++) {
                KvmVcpu c = vm.createVcpu(i);
                vcpus.add(c);
                c.setCpuid2(cpuid2);
                runners.add(new VcpuRunner(c, bus, runners::fail));
            }
            bus.attach(serial);
            bus.attach(workload);
            registry.register(new VmConfigSection(Backend.KVM, memory, this::shape));
            registry.register(new VmSection(vm));
            int[] msrs = savableMsrs(kvm, vcpus.get(0));
            for (KvmVcpu c : vcpus) {
                registry.register(new VcpuSection(c, msrs));
            }
            registry.register(serial);
            registry.register(workload);
            if (boot) {
                GuestLayout layout = new GuestLayout(config.memoryBytes(), config.vcpus(), config.workload());
                layout.writeBootStructures(memory, vcpus.get(0).getTscKhz());
                for (KvmVcpu c : vcpus) {
                    setBootState(c);
                }
            }
        } catch (RuntimeException e) {
            closeQuietly();
            throw e;
        }
    }

    /** A fresh VM whose guest starts from the beginning when {@link #start()} is called. */
    public static MicroVm create(VmConfig config, Consumer<String> console) {
        return new MicroVm(config, null, console, true);
    }

    /**
     * An empty VM of the given shape that will receive memory and state from elsewhere (a migration's
     * destination, a restore): the CPUID the guest saw, and its TSC rate (0: unknown), which this VM's
     * vCPUs are scaled to if this host's differs.
     *
     * @throws IncompatibleShapeException if the rate differs and cannot be scaled here
     */
    public static MicroVm createIncoming(VmShape shape, Consumer<String> console) {
        List<KvmCpuidEntry2> cpuid = new ArrayList<>();
        for (CpuidLeaf l : shape.cpuid()) {
            cpuid.add(KvmCpuidEntry2.of(l.function(), l.index(), l.flags(), l.eax(), l.ebx(), l.ecx(), l.edx()));
        }
        MicroVm vm = new MicroVm(shape.config(), cpuid, console, false);
        int hostKhz = 0;
        try {
            hostKhz = vm.tscKhz();
            if (shape.tscKhz() > 0 && !HostTsc.sameRate(shape.tscKhz(), hostKhz)) {
                for (KvmVcpu c : vm.vcpus) {
                    c.setTscKhz(shape.tscKhz());
                }
            }
        } catch (NativeException e) {
            vm.close();
            throw new IncompatibleShapeException("tsc_khz", "scaling the guest's TSC from " + hostKhz + " to "
                    + shape.tscKhz() + " kHz failed: " + e.getMessage(), e);
        } catch (RuntimeException e) {
            vm.close();
            throw e;
        }
        Vcpus.startParked(vm.runners, vm::close); // its start is part of a downtime: the threads wait ready
        return vm;
    }

    /** The guest's TSC rate in kHz (KVM_GET_TSC_KHZ), or 0 where KVM cannot tell. */
    public int tscKhz() {
        return kvmTscKhz ? vcpus.get(0).getTscKhz() : 0;
    }

    /** This host's TSC as a new VM sees it: its rate (0: unknown) and whether KVM can scale a guest's. */
    public static HostTsc hostTsc() {
        try (KvmSystem k = KvmSystem.open()) {
            boolean scalable = k.checkExtension(KvmIoctls.KVM_CAP_TSC_CONTROL) > 0;
            if (k.checkExtension(KvmIoctls.KVM_CAP_GET_TSC_KHZ) <= 0) {
                return new HostTsc(0, scalable);
            }
            try (KvmVm vm = k.createVm(); KvmVcpu c = vm.createVcpu(0)) {
                return new HostTsc(c.getTscKhz(), scalable);
            }
        }
    }

    /** CPUID entries this host's KVM supports, as a fresh VM would see them. */
    public static List<KvmCpuidEntry2> supportedCpuid() {
        try (KvmSystem k = KvmSystem.open()) {
            return k.supportedCpuid().entries();
        }
    }

    private static int[] savableMsrs(KvmSystem kvm, KvmVcpu probe) {
        int[] cached = savableMsrs;
        if (cached != null) {
            return cached;
        }
        // KVM_GET_MSR_INDEX_LIST names MSRs this vCPU model may not have; keep those a GET accepts.
        List<Integer> ok = new ArrayList<>();
        for (int idx : kvm.msrIndexList()) {
            try {
                probe.getMsrs(new int[] {idx});
                ok.add(idx);
            } catch (NativeException e) {
                // not savable on this host
            }
        }
        cached = ok.stream().mapToInt(Integer::intValue).toArray();
        savableMsrs = cached;
        return cached;
    }

    /** 64-bit long mode, ring 0, RSP at this vCPU's iretq frame, RDI = vCPU index. */
    private static void setBootState(KvmVcpu c) {
        KvmSregs s = c.getSregs();
        s.cs = segment(GuestAbi.SEL_KERNEL_CODE, 11, true);
        KvmSegment data = segment(GuestAbi.SEL_KERNEL_DATA, 3, false);
        s.ds = data;
        s.es = segment(GuestAbi.SEL_KERNEL_DATA, 3, false);
        s.fs = segment(GuestAbi.SEL_KERNEL_DATA, 3, false);
        s.gs = segment(GuestAbi.SEL_KERNEL_DATA, 3, false);
        s.ss = segment(GuestAbi.SEL_KERNEL_DATA, 3, false);
        KvmSegment tr = new KvmSegment();
        tr.base = GuestAbi.TSS_GPA;
        tr.limit = (int) GuestAbi.TSS_LIMIT;
        tr.selector = (short) GuestAbi.SEL_TSS;
        tr.type = 11;
        tr.present = 1;
        s.tr = tr;
        s.gdt.base = GuestAbi.GDT_GPA;
        s.gdt.limit = (short) (GuestLayout.gdtBytes() - 1);
        s.idt.base = 0;
        s.idt.limit = 0; // no IDT: a guest exception triple-faults and surfaces as KVM_EXIT_SHUTDOWN
        s.cr0 = 0x80050033L; // PG, AM, WP, NE, ET, MP, PE
        s.cr3 = GuestAbi.PML4_GPA;
        s.cr4 = 0x620; // OSXMMEXCPT, OSFXSR, PAE
        s.efer = 0x500; // LMA, LME
        c.setSregs(s);
        KvmRegs r = new KvmRegs();
        r.rip = GuestAbi.CODE_GPA;
        r.rsp = GuestLayout.bootFrameGpa(c.id());
        r.rdi = c.id();
        r.rflags = 2;
        c.setRegs(r);
        KvmMpState mp = new KvmMpState();
        mp.mp_state = KvmIoctls.KVM_MP_STATE_RUNNABLE;
        c.setMpState(mp);
    }

    private static KvmSegment segment(int selector, int type, boolean code) {
        KvmSegment s = new KvmSegment();
        s.base = 0;
        s.limit = 0xffffffff;
        s.selector = (short) selector;
        s.type = (byte) type;
        s.present = 1;
        s.s = 1;
        s.g = 1;
        s.l = (byte) (code ? 1 : 0);
        s.db = (byte) (code ? 0 : 1);
        return s;
    }

    @Override
    public void start() {
        runners.start();
    }

    /** Stops all vCPUs and returns once none is inside KVM_RUN. Idempotent. */
    @Override
    public void pause() throws InterruptedException {
        runners.pause();
    }

    @Override
    public void resume() {
        runners.resume();
    }

    @Override
    public boolean paused() {
        return runners.paused();
    }

    @Override
    public List<SectionSchema<?>> stateSchemas() {
        return schemas();
    }

    /** Captures every section (VM, vCPUs, devices). The VM must be paused (or not yet started). */
    @Override
    public SectionSet saveState() {
        return runners.saveState();
    }

    @Override
    public void validateState(SectionSet sections) throws StateException {
        runners.validateState(sections);
    }

    /**
     * Validates {@code sections} completely, then applies them. Nothing is applied if any section is
     * missing, unknown-and-required, of an unreadable version or malformed.
     */
    @Override
    public void restoreState(SectionSet sections) throws StateException {
        runners.restoreState(sections);
    }

    @Override
    public Backend backend() {
        return Backend.KVM;
    }

    @Override
    public VmShape shape() {
        List<CpuidLeaf> leaves = new ArrayList<>();
        for (KvmCpuidEntry2 e : cpuid) {
            leaves.add(new CpuidLeaf(e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx));
        }
        return new VmShape(config, leaves, tscKhz());
    }

    @Override
    public Optional<GuestProbe> probe() {
        return Optional.of(probe);
    }

    @Override
    public DirtyTracker dirtyTracker() {
        return dirtyLog;
    }

    /** KVM reaches guest memory through the region mappings: a userfaultfd of its own over them. */
    @Override
    public MissingPageTrap trapMissingPages() {
        return MissingPageTrap.open(memory);
    }

    /** Linux thread ids of the vCPU threads, in vCPU order (empty before {@link #start()}). */
    @Override
    public List<Integer> vcpuThreadIds() {
        return runners.threadIds();
    }

    @Override
    public long vcpuExits() {
        return runners.exits();
    }

    @Override
    public Throwable failure() {
        return runners.failure();
    }

    public VmConfig config() {
        return config;
    }

    public GuestMemory memory() {
        return memory;
    }

    public WorkloadPort workloadPort() {
        return workload;
    }

    public Serial16550 serial() {
        return serial;
    }

    public GuestLayout layout() {
        return new GuestLayout(config.memoryBytes(), config.vcpus(), config.workload());
    }

    /** Stops the vCPU threads and releases every fd and mapping. Idempotent. */
    @Override
    public void close() {
        if (runners.close()) {
            closeQuietly();
        }
    }

    private void closeQuietly() {
        runners.close();
        for (KvmVcpu c : vcpus) {
            c.close();
        }
        if (vm != null) {
            vm.close();
        }
        if (memory != null) {
            memory.close();
        }
        kvm.close();
    }
}
