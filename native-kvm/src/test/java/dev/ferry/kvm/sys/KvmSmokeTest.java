package dev.ferry.kvm.sys;

import static dev.ferry.kvm.sys.KvmIoctls.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.jna.Memory;
import com.sun.jna.Pointer;
import dev.ferry.linux.Errno;
import dev.ferry.linux.FdSnapshot;
import dev.ferry.linux.MappedMemory;
import dev.ferry.linux.NativeException;
import dev.ferry.linux.NativeStruct;
import java.util.Arrays;
import java.util.List;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Exercises every KVM ioctl wrapper against the real /dev/kvm without running guest code:
 * get → set → get round trips of all vCPU/VM state, MSRs, CPUID, dirty logging, immediate_exit,
 * errno mapping, and that every fd and mapping is released.
 */
class KvmSmokeTest {
    static final int MSR_IA32_TSC = 0x10;
    static final int MSR_IA32_SYSENTER_CS = 0x174;
    static final int MSR_IA32_SYSENTER_ESP = 0x175;
    static final int MSR_IA32_SYSENTER_EIP = 0x176;
    static final int MSR_IA32_CR_PAT = 0x277;
    static final int MSR_STAR = 0xc0000081;
    static final int MSR_LSTAR = 0xc0000082;
    static final int MSR_SYSCALL_MASK = 0xc0000084;
    static final int MSR_KERNEL_GS_BASE = 0xc0000102;
    static final long MEM_SIZE = 2 << 20; // 512 pages
    static final long PAGE = 4096;

    private FdSnapshot before;

    @BeforeEach
    void setUp() {
        KvmTestSupport.assumeKvm();
        before = FdSnapshot.take();
    }

    @AfterEach
    void noLeaks() {
        if (before == null) {
            return;
        }
        FdSnapshot after = FdSnapshot.take();
        assertEquals(List.of(), after.leakedSince(before), "fds/mappings left open");
        assertTrue(after.nativeCount() <= before.nativeCount(), "native fds grew from " + before.nativeCount() + " to "
                + after.nativeCount() + ": " + after.fds());
    }

    /** A VM with in-kernel irqchip + PIT, 2 MiB of memfd RAM at GPA 0 with dirty logging, one vCPU. */
    private static final class Fixture implements AutoCloseable {
        final KvmSystem kvm = KvmSystem.open();
        final KvmVm vm = kvm.createVm();
        final MappedMemory ram = MappedMemory.createShared("kvm-smoke-ram", MEM_SIZE);
        final KvmVcpu vcpu;
        final boolean manualDirtyLog;

        Fixture() {
            int manual = vm.checkExtension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
            int wanted = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
            manualDirtyLog = (manual & wanted) == wanted;
            if (manualDirtyLog) {
                vm.enableCap(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, wanted);
            }
            vm.setIdentityMapAddr(0xfffbc000L); // both must precede vCPU creation; no-ops on AMD
            vm.setTssAddr(0xfffbd000L);
            vm.createIrqchip();
            vm.createPit2(KvmPitConfig.KVM_PIT_SPEAKER_DUMMY);
            vm.setUserMemoryRegion(0, KVM_MEM_LOG_DIRTY_PAGES, 0, ram.size(), ram.address());
            vcpu = vm.createVcpu(0);
        }

        @Override
        public void close() {
            vcpu.close();
            vm.close();
            ram.close();
            kvm.close();
        }
    }

    @Test
    void systemQueries() {
        try (KvmSystem kvm = KvmSystem.open()) {
            assertEquals(12, kvm.apiVersion());
            assertTrue(KvmSystem.available());
            assertEquals(1, kvm.checkExtension(KVM_CAP_USER_MEMORY));
            assertTrue(kvm.checkExtension(KVM_CAP_NR_MEMSLOTS) > 0);
            int mmapSize = kvm.vcpuMmapSize();
            assertTrue(mmapSize >= KvmRun.SIZEOF_KVM_RUN && mmapSize % PAGE == 0, "vcpu mmap size " + mmapSize);

            int[] msrs = kvm.msrIndexList();
            assertTrue(msrs.length > 10, "MSR index list: " + Arrays.toString(msrs));
            assertTrue(IntStream.of(msrs).anyMatch(m -> m == MSR_IA32_SYSENTER_CS), "SYSENTER_CS listed");
            assertTrue(IntStream.of(msrs).anyMatch(m -> m == MSR_IA32_TSC), "TSC listed");

            KvmCpuid2 cpuid = kvm.supportedCpuid();
            assertTrue(cpuid.nent() > 5 && cpuid.nent() <= cpuid.capacity(), "nent " + cpuid.nent());
            KvmCpuidEntry2 leaf0 = cpuid.find(0, 0).orElseThrow();
            String vendor = fourCC(leaf0.ebx) + fourCC(leaf0.edx) + fourCC(leaf0.ecx);
            assertTrue(vendor.equals("GenuineIntel") || vendor.equals("AuthenticAMD") || vendor.equals("HygonGenuine"),
                    "CPUID vendor " + vendor);
            assertTrue(cpuid.find(1, 0).isPresent());

        }
        KvmSystem kvm = KvmSystem.open();
        kvm.close();
        kvm.close(); // idempotent
        assertThrows(IllegalStateException.class, kvm::apiVersion);
    }

    @Test
    void vcpuRegisterStateRoundTrips() {
        try (Fixture f = new Fixture()) {
            KvmVcpu v = f.vcpu;
            assertEquals(0, v.id());

            KvmRegs regs = v.getRegs();
            regs.rax = 0x1122334455667788L;
            regs.r15 = -2;
            regs.rip = 0x1000;
            regs.rflags = 0x2;
            v.setRegs(regs);
            KvmRegs regs2 = v.getRegs();
            assertEquals(0x1122334455667788L, regs2.rax);
            assertEquals(-2, regs2.r15);
            assertEquals(0x1000, regs2.rip);
            assertArrayEquals(regs.toBytes(), regs2.toBytes());

            KvmSregs sregs = v.getSregs();
            assertEquals(0xfee00000L, sregs.apic_base & ~0xfffL, "reset APIC base");
            sregs.cs.base = 0;
            sregs.cs.selector = 0;
            sregs.cr0 &= ~0x60000000L; // CD/NW off: a change KVM accepts in real mode
            v.setSregs(sregs);
            KvmSregs sregs2 = v.getSregs();
            assertEquals(0, sregs2.cs.base);
            assertEquals(sregs.cr0, sregs2.cr0);
            assertArrayEquals(sregs.toBytes(), sregs2.toBytes());

            KvmFpu fpu = v.getFpu();
            fpu.fcw = 0x27f;
            fpu.xmm[16] = 0x5a;
            fpu.mxcsr = 0x1f80;
            v.setFpu(fpu);
            KvmFpu fpu2 = v.getFpu();
            assertEquals(0x27f, fpu2.fcw);
            assertEquals(0x5a, fpu2.xmm[16]);

            roundTrip(v.getXsave(), v::setXsave, v::getXsave);
            KvmXcrs xcrs = v.getXcrs();
            assertTrue(xcrs.nr_xcrs >= 1 && xcrs.xcrs[0].xcr == 0 && (xcrs.xcrs[0].value & 1) == 1, "XCR0 has x87");
            roundTrip(xcrs, v::setXcrs, v::getXcrs);

            KvmLapicState lapic = v.getLapic();
            lapic.setReg(0x80, 0x20); // TPR
            v.setLapic(lapic);
            assertEquals(0x20, v.getLapic().reg(0x80));
            roundTrip(v.getLapic(), v::setLapic, v::getLapic);

            KvmVcpuEvents events = v.getVcpuEvents();
            roundTrip(events, v::setVcpuEvents, v::getVcpuEvents);

            KvmMpState mp = v.getMpState();
            assertEquals(KVM_MP_STATE_RUNNABLE, mp.mp_state, "BSP after reset: " + mpStateName(mp.mp_state));
            roundTrip(mp, v::setMpState, v::getMpState);

            KvmDebugregs dbg = v.getDebugregs();
            dbg.db[0] = 0x1000;
            dbg.db[3] = 0x3000;
            v.setDebugregs(dbg);
            KvmDebugregs dbg2 = v.getDebugregs();
            assertEquals(0x1000, dbg2.db[0]);
            assertEquals(0x3000, dbg2.db[3]);
            assertArrayEquals(dbg.toBytes(), dbg2.toBytes());
        }
    }

    @Test
    void msrsRoundTripAndPartialAccessThrows() {
        try (Fixture f = new Fixture()) {
            KvmVcpu v = f.vcpu;
            int[] idx = {MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP, MSR_IA32_CR_PAT,
                MSR_STAR, MSR_LSTAR, MSR_SYSCALL_MASK, MSR_KERNEL_GS_BASE};
            long[] initial = v.getMsrs(idx);
            assertEquals(idx.length, initial.length);
            assertEquals(0x0007040600070406L, initial[3], "PAT reset value");

            long[] values = {0x10, 0xffff_8000_0000_1000L, 0xffff_ffff_8100_0000L, 0x0007010600070106L,
                0x0023_0010_0000_0000L, 0xffff_ffff_8160_0000L, 0x47700, 0xffff_8880_0000_0000L};
            v.setMsrs(idx, values);
            assertArrayEquals(values, v.getMsrs(idx));

            // IA32_TSC is readable and counts; whether a host-initiated write moves it depends on the
            // hypervisor (PVM ignores it: no TSC offsetting in ring-3 guests), so only monotonicity is checked.
            long tsc1 = v.getMsrs(new int[] {MSR_IA32_TSC})[0];
            v.setMsrs(new int[] {MSR_IA32_TSC}, new long[] {tsc1});
            long tsc2 = v.getMsrs(new int[] {MSR_IA32_TSC})[0];
            assertTrue(tsc1 > 0 && tsc2 >= tsc1, "TSC " + tsc1 + " then " + tsc2);

            MsrAccessException e = assertThrows(MsrAccessException.class,
                    () -> v.getMsrs(new int[] {MSR_IA32_SYSENTER_CS, 0xdeadbeef}));
            assertEquals(1, e.processed());
            assertEquals(2, e.requested());
            assertEquals(0xdeadbeef, e.failedIndex());
            assertEquals(0, e.errno());
            assertThrows(MsrAccessException.class, () -> v.setMsrs(new int[] {0xdeadbeef}, new long[] {1}));
            assertEquals(0, v.getMsrs(new int[0]).length);
        }
    }

    @Test
    void cpuidAndTsc() {
        try (Fixture f = new Fixture()) {
            KvmCpuid2 supported = f.kvm.supportedCpuid();
            f.vcpu.setCpuid2(supported);
            KvmCpuid2 back = f.vcpu.getCpuid2(supported.nent() + 8);
            // KVM rewrites some leaves at runtime (OSXSAVE/APIC bits, leaf 0xD sizes; PVM even reports
            // host feature bits in leaves 1 and 7), and some hosts drop leaves they advertise (AMX 0x1d/0x1e
            // and AVX10 0x24 on a Sapphire Rapids PVM host), so check that every leaf read back was set, in
            // order, and that the basic leaves survive.
            assertTrue(back.nent() > 0 && back.nent() <= supported.nent(), back.nent() + " of " + supported.nent());
            int j = 0;
            for (int i = 0; i < back.nent(); i++) {
                KvmCpuidEntry2 b = back.entry(i);
                while (j < supported.nent() && (supported.entry(j).function != b.function
                        || supported.entry(j).index != b.index)) {
                    j++;
                }
                assertTrue(j < supported.nent(), String.format("leaf 0x%x.%d was never set", b.function, b.index));
                assertEquals(supported.entry(j).flags, b.flags, String.format("flags of leaf 0x%x.%d", b.function, b.index));
            }
            for (int leaf : new int[] {0, 1, 7, 0x80000000, 0x80000001}) {
                assertTrue(back.find(leaf, 0).isPresent(), String.format("leaf 0x%x read back", leaf));
            }
            assertArrayEquals(supported.find(0, 0).orElseThrow().toBytes(), back.find(0, 0).orElseThrow().toBytes());
            NativeException tooSmall = assertThrows(NativeException.class, () -> f.vcpu.getCpuid2(1));
            assertEquals("E2BIG", tooSmall.errnoName());
            KvmCpuid2 oneLeaf = KvmCpuid2.of(List.of(supported.find(0, 0).orElseThrow()));
            f.vcpu.setCpuid2(oneLeaf);
            assertEquals(1, f.vcpu.getCpuid2(4).nent());

            if (f.kvm.checkExtension(KVM_CAP_GET_TSC_KHZ) > 0) {
                int khz = f.vcpu.getTscKhz();
                assertTrue(khz > 100_000, "TSC kHz " + khz);
                if (f.kvm.checkExtension(KVM_CAP_TSC_CONTROL) > 0) {
                    f.vcpu.setTscKhz(khz);
                    assertEquals(khz, f.vcpu.getTscKhz());
                }
            }
        }
    }

    @Test
    void vmDeviceStateRoundTrips() {
        try (Fixture f = new Fixture()) {
            KvmVm vm = f.vm;
            for (int chip : new int[] {KvmIrqchip.KVM_IRQCHIP_PIC_MASTER, KvmIrqchip.KVM_IRQCHIP_PIC_SLAVE,
                    KvmIrqchip.KVM_IRQCHIP_IOAPIC}) {
                KvmIrqchip c = vm.getIrqchip(chip);
                assertEquals(chip, c.chip_id);
                vm.setIrqchip(c);
                assertArrayEquals(c.toBytes(), vm.getIrqchip(chip).toBytes(), "irqchip " + chip);
            }
            KvmIrqchip ioapic = vm.getIrqchip(KvmIrqchip.KVM_IRQCHIP_IOAPIC);
            assertEquals(0xfec00000L, ioapic.ioapic().base_address);
            KvmIoapicState io = ioapic.ioapic();
            io.redirtbl[3] = 0x1_0000_0031L; // masked, vector 0x31
            ioapic.setIoapic(io);
            vm.setIrqchip(ioapic);
            assertEquals(0x31, vm.getIrqchip(KvmIrqchip.KVM_IRQCHIP_IOAPIC).ioapic().redirtbl[3] & 0xff);
            KvmIrqchip master = vm.getIrqchip(KvmIrqchip.KVM_IRQCHIP_PIC_MASTER);
            KvmPicState pic = master.pic();
            pic.imr = (byte) 0xfb;
            master.setPic(pic);
            vm.setIrqchip(master);
            assertEquals((byte) 0xfb, vm.getIrqchip(KvmIrqchip.KVM_IRQCHIP_PIC_MASTER).pic().imr);

            KvmPitState2 pit = vm.getPit2();
            pit.channels[2].gate = 1;
            vm.setPit2(pit);
            KvmPitState2 pit2 = vm.getPit2();
            for (int i = 0; i < 3; i++) { // count_load_time is re-stamped by KVM_SET_PIT2
                pit.channels[i].count_load_time = 0;
                pit2.channels[i].count_load_time = 0;
            }
            assertArrayEquals(pit.toBytes(), pit2.toBytes());

            KvmClockData clock = vm.getClock();
            clock.clock += 1_000_000_000L;
            clock.flags &= KVM_CLOCK_REALTIME; // only REALTIME is an input flag
            vm.setClock(clock);
            KvmClockData clock2 = vm.getClock();
            assertTrue(clock2.clock >= clock.clock && clock2.clock - clock.clock < 10_000_000_000L,
                    "kvmclock after set: " + clock2.clock + " vs " + clock.clock);
        }
    }

    @Test
    void dirtyLogWithManualProtect() {
        try (Fixture f = new Fixture()) {
            int pages = (int) (MEM_SIZE / PAGE);
            Memory bitmap = new Memory(pages / 8);
            bitmap.clear();
            f.vm.getDirtyLog(0, bitmap);
            if (f.manualDirtyLog) {
                // KVM_DIRTY_LOG_INITIALLY_SET: every page starts dirty, GET does not clear
                assertEquals(pages, popcount(bitmap), "initially-set bitmap");
                f.vm.clearDirtyLog(0, 0, pages, bitmap);
                bitmap.clear();
                f.vm.getDirtyLog(0, bitmap);
                assertEquals(0, popcount(bitmap), "after KVM_CLEAR_DIRTY_LOG");
                NativeException e = assertThrows(NativeException.class, () -> f.vm.clearDirtyLog(0, 1, 64, bitmap));
                assertEquals(Errno.EINVAL, e.errno(), "first_page must be 64-aligned");
            } else {
                assertEquals(0, popcount(bitmap));
            }
            NativeException noSlot = assertThrows(NativeException.class, () -> f.vm.getDirtyLog(7, bitmap));
            assertEquals("KVM_GET_DIRTY_LOG", noSlot.operation());
        }
    }

    @Test
    void immediateExitAndRunMapping() {
        try (Fixture f = new Fixture()) {
            KvmRun run = f.vcpu.run();
            assertTrue(run.size() >= KvmRun.SIZEOF_KVM_RUN);
            if (f.kvm.checkExtension(KVM_CAP_IMMEDIATE_EXIT) > 0) {
                run.setImmediateExit(true);
                assertTrue(run.immediateExit());
                assertEquals(1, run.pointer().getByte(KvmRun.OFF_IMMEDIATE_EXIT));
                assertEquals(-Errno.EINTR, f.vcpu.runOnce());
                assertEquals(-Errno.EINTR, f.vcpu.runOnce());
                run.setImmediateExit(false);
            }
            run.setRequestInterruptWindow(true);
            assertEquals(1, run.pointer().getByte(KvmRun.OFF_REQUEST_INTERRUPT_WINDOW));
            run.setRequestInterruptWindow(false);
        }
    }

    @Test
    void errorsAreTypedAndClosingIsIdempotent() {
        try (Fixture f = new Fixture()) {
            NativeException dup = assertThrows(NativeException.class, () -> f.vm.createVcpu(0));
            assertEquals(Errno.EEXIST, dup.errno());
            assertEquals("KVM_CREATE_VCPU: EEXIST (17): File exists", dup.getMessage());

            NativeException overlap = assertThrows(NativeException.class,
                    () -> f.vm.setUserMemoryRegion(1, 0, 0, PAGE, f.ram.address()));
            assertEquals("EEXIST", overlap.errnoName(), "overlapping slot: " + overlap.getMessage());

            KvmVcpu second = f.vm.createVcpu(1);
            int fd = second.fd();
            assertNotEquals(f.vcpu.fd(), fd);
            second.close();
            second.close();
            assertEquals(-Errno.EBADF, second.runOnce());
            assertThrows(IllegalStateException.class, second::getRegs);

            f.vm.setUserMemoryRegion(0, 0, 0, 0, f.ram.address()); // delete the slot
            f.ram.close();
            f.ram.close();
        }
    }

    private interface Setter<T> {
        void set(T value);
    }

    private interface Getter<T> {
        T get();
    }

    /** set(what get returned), then get again: same bytes. */
    private static <T extends NativeStruct> void roundTrip(T got, Setter<T> set, Getter<T> get) {
        byte[] first = got.toBytes();
        set.set(got);
        byte[] second = get.get().toBytes();
        assertArrayEquals(first, second, got.getClass().getSimpleName() + " round trip");
    }

    private static int popcount(Pointer bitmap) {
        int n = 0;
        for (long v : bitmap.getLongArray(0, (int) (MEM_SIZE / PAGE / 64))) {
            n += Long.bitCount(v);
        }
        return n;
    }

    private static String fourCC(int v) {
        return new String(new byte[] {(byte) v, (byte) (v >> 8), (byte) (v >> 16), (byte) (v >> 24)},
                java.nio.charset.StandardCharsets.US_ASCII);
    }
}
