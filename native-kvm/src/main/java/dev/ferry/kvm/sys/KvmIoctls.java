package dev.ferry.kvm.sys;

import static dev.ferry.linux.Ioctl._IO;
import static dev.ferry.linux.Ioctl._IOR;
import static dev.ferry.linux.Ioctl._IOW;
import static dev.ferry.linux.Ioctl._IOWR;

import com.sun.jna.Structure;

/**
 * linux/kvm.h (with asm/kvm.h for x86-64): ioctl numbers, capabilities, exit reasons, MP states
 * and flags. ioctl numbers are computed with {@link Ioctl} from the sizes of the JNA structures,
 * so a wrong structure size also shows up as a wrong ioctl number in {@code StructLayoutTest}.
 */
public final class KvmIoctls {
    private KvmIoctls() {}

    public static final int KVM_API_VERSION = 12;

    public static final int KVMIO = 0xAE;

    private static int sizeof(Class<? extends Structure> type) {
        return Structure.newInstance(type).size();
    }

    private static final int SIZEOF_U64 = 8;

    // ---- ioctls for /dev/kvm fds --------------------------------------------------------------
    public static final long KVM_GET_API_VERSION = _IO(KVMIO, 0x00);
    public static final long KVM_CREATE_VM = _IO(KVMIO, 0x01); /* returns a VM fd */
    public static final long KVM_GET_MSR_INDEX_LIST = _IOWR(KVMIO, 0x02, KvmMsrList.HEADER_SIZE);
    /*
     * Check if a kvm extension is available.  Argument is extension number,
     * return is 1 (yes) or 0 (no, sorry).
     */
    public static final long KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03);
    /*
     * Get size for mmap(vcpu_fd)
     */
    public static final long KVM_GET_VCPU_MMAP_SIZE = _IO(KVMIO, 0x04); /* in bytes */
    public static final long KVM_GET_SUPPORTED_CPUID = _IOWR(KVMIO, 0x05, KvmCpuid2.HEADER_SIZE);
    public static final long KVM_GET_EMULATED_CPUID = _IOWR(KVMIO, 0x09, KvmCpuid2.HEADER_SIZE);
    public static final long KVM_GET_MSR_FEATURE_INDEX_LIST = _IOWR(KVMIO, 0x0a, KvmMsrList.HEADER_SIZE);

    // ---- ioctls for VM fds ----------------------------------------------------------------------
    /*
     * KVM_CREATE_VCPU receives as a parameter the vcpu slot, and returns
     * a vcpu fd.
     */
    public static final long KVM_CREATE_VCPU = _IO(KVMIO, 0x41);
    public static final long KVM_GET_DIRTY_LOG = _IOW(KVMIO, 0x42, sizeof(KvmDirtyLog.class));
    public static final long KVM_SET_USER_MEMORY_REGION = _IOW(KVMIO, 0x46, sizeof(KvmUserspaceMemoryRegion.class));
    public static final long KVM_SET_TSS_ADDR = _IO(KVMIO, 0x47);
    public static final long KVM_SET_IDENTITY_MAP_ADDR = _IOW(KVMIO, 0x48, SIZEOF_U64);
    /* Device model IOC */
    public static final long KVM_CREATE_IRQCHIP = _IO(KVMIO, 0x60);
    public static final long KVM_GET_IRQCHIP = _IOWR(KVMIO, 0x62, sizeof(KvmIrqchip.class));
    public static final long KVM_SET_IRQCHIP = _IOR(KVMIO, 0x63, sizeof(KvmIrqchip.class));
    public static final long KVM_CREATE_PIT2 = _IOW(KVMIO, 0x77, sizeof(KvmPitConfig.class));
    public static final long KVM_SET_CLOCK = _IOW(KVMIO, 0x7b, sizeof(KvmClockData.class));
    public static final long KVM_GET_CLOCK = _IOR(KVMIO, 0x7c, sizeof(KvmClockData.class));
    /* Available with KVM_CAP_PIT_STATE2 */
    public static final long KVM_GET_PIT2 = _IOR(KVMIO, 0x9f, sizeof(KvmPitState2.class));
    public static final long KVM_SET_PIT2 = _IOW(KVMIO, 0xa0, sizeof(KvmPitState2.class));
    /* Available with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT */
    public static final long KVM_CLEAR_DIRTY_LOG = _IOWR(KVMIO, 0xc0, sizeof(KvmClearDirtyLog.class));

    // ---- ioctls for vcpu fds --------------------------------------------------------------------
    public static final long KVM_RUN = _IO(KVMIO, 0x80);
    public static final long KVM_GET_REGS = _IOR(KVMIO, 0x81, sizeof(KvmRegs.class));
    public static final long KVM_SET_REGS = _IOW(KVMIO, 0x82, sizeof(KvmRegs.class));
    public static final long KVM_GET_SREGS = _IOR(KVMIO, 0x83, sizeof(KvmSregs.class));
    public static final long KVM_SET_SREGS = _IOW(KVMIO, 0x84, sizeof(KvmSregs.class));
    public static final long KVM_GET_MSRS = _IOWR(KVMIO, 0x88, KvmMsrs.HEADER_SIZE);
    public static final long KVM_SET_MSRS = _IOW(KVMIO, 0x89, KvmMsrs.HEADER_SIZE);
    public static final long KVM_SET_SIGNAL_MASK = _IOW(KVMIO, 0x8b, KvmSignalMask.HEADER_SIZE);
    public static final long KVM_GET_FPU = _IOR(KVMIO, 0x8c, sizeof(KvmFpu.class));
    public static final long KVM_SET_FPU = _IOW(KVMIO, 0x8d, sizeof(KvmFpu.class));
    public static final long KVM_GET_LAPIC = _IOR(KVMIO, 0x8e, sizeof(KvmLapicState.class));
    public static final long KVM_SET_LAPIC = _IOW(KVMIO, 0x8f, sizeof(KvmLapicState.class));
    public static final long KVM_SET_CPUID2 = _IOW(KVMIO, 0x90, KvmCpuid2.HEADER_SIZE);
    public static final long KVM_GET_CPUID2 = _IOWR(KVMIO, 0x91, KvmCpuid2.HEADER_SIZE);
    public static final long KVM_GET_MP_STATE = _IOR(KVMIO, 0x98, sizeof(KvmMpState.class));
    public static final long KVM_SET_MP_STATE = _IOW(KVMIO, 0x99, sizeof(KvmMpState.class));
    /* Available with KVM_CAP_USER_NMI */
    public static final long KVM_NMI = _IO(KVMIO, 0x9a);
    /* Available with KVM_CAP_VCPU_EVENTS */
    public static final long KVM_GET_VCPU_EVENTS = _IOR(KVMIO, 0x9f, sizeof(KvmVcpuEvents.class));
    public static final long KVM_SET_VCPU_EVENTS = _IOW(KVMIO, 0xa0, sizeof(KvmVcpuEvents.class));
    /* Available with KVM_CAP_DEBUGREGS */
    public static final long KVM_GET_DEBUGREGS = _IOR(KVMIO, 0xa1, sizeof(KvmDebugregs.class));
    public static final long KVM_SET_DEBUGREGS = _IOW(KVMIO, 0xa2, sizeof(KvmDebugregs.class));
    /* Available with KVM_CAP_TSC_CONTROL for a vCPU, or with KVM_CAP_VM_TSC_CONTROL for a VM */
    public static final long KVM_SET_TSC_KHZ = _IO(KVMIO, 0xa2);
    public static final long KVM_GET_TSC_KHZ = _IO(KVMIO, 0xa3);
    /*
     * vcpu version available with KVM_ENABLE_CAP
     * vm version available with KVM_CAP_ENABLE_CAP_VM
     */
    public static final long KVM_ENABLE_CAP = _IOW(KVMIO, 0xa3, sizeof(KvmEnableCap.class));
    /* Available with KVM_CAP_XSAVE */
    public static final long KVM_GET_XSAVE = _IOR(KVMIO, 0xa4, sizeof(KvmXsave.class));
    public static final long KVM_SET_XSAVE = _IOW(KVMIO, 0xa5, sizeof(KvmXsave.class));
    /* Available with KVM_CAP_XCRS */
    public static final long KVM_GET_XCRS = _IOR(KVMIO, 0xa6, sizeof(KvmXcrs.class));
    public static final long KVM_SET_XCRS = _IOW(KVMIO, 0xa7, sizeof(KvmXcrs.class));
    /* Available with KVM_CAP_KVMCLOCK_CTRL */
    public static final long KVM_KVMCLOCK_CTRL = _IO(KVMIO, 0xad);
    /* Available with KVM_CAP_XSAVE2 */
    public static final long KVM_GET_XSAVE2 = _IOR(KVMIO, 0xcf, sizeof(KvmXsave.class));

    // ---- capabilities (KVM_CHECK_EXTENSION) -----------------------------------------------------
    public static final int KVM_CAP_IRQCHIP = 0;
    public static final int KVM_CAP_HLT = 1;
    public static final int KVM_CAP_USER_MEMORY = 3;
    public static final int KVM_CAP_SET_TSS_ADDR = 4;
    public static final int KVM_CAP_EXT_CPUID = 7;
    public static final int KVM_CAP_NR_VCPUS = 9; /* returns recommended max vcpus per vm */
    public static final int KVM_CAP_NR_MEMSLOTS = 10; /* returns max memory slots per vm */
    public static final int KVM_CAP_MP_STATE = 14;
    public static final int KVM_CAP_SYNC_MMU = 16; /* Changes to host mmap are reflected in guest */
    public static final int KVM_CAP_USER_NMI = 22;
    public static final int KVM_CAP_PIT2 = 33;
    public static final int KVM_CAP_PIT_STATE2 = 35;
    public static final int KVM_CAP_SET_IDENTITY_MAP_ADDR = 37;
    public static final int KVM_CAP_ADJUST_CLOCK = 39;
    public static final int KVM_CAP_INTERNAL_ERROR_DATA = 40;
    public static final int KVM_CAP_VCPU_EVENTS = 41;
    public static final int KVM_CAP_DEBUGREGS = 50;
    public static final int KVM_CAP_XSAVE = 55;
    public static final int KVM_CAP_XCRS = 56;
    public static final int KVM_CAP_TSC_CONTROL = 60;
    public static final int KVM_CAP_GET_TSC_KHZ = 61;
    public static final int KVM_CAP_MAX_VCPUS = 66; /* returns max vcpus per vm */
    public static final int KVM_CAP_KVMCLOCK_CTRL = 76;
    public static final int KVM_CAP_READONLY_MEM = 81;
    public static final int KVM_CAP_CHECK_EXTENSION_VM = 105;
    public static final int KVM_CAP_IMMEDIATE_EXIT = 136;
    public static final int KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168;
    public static final int KVM_CAP_DIRTY_LOG_RING = 192;
    public static final int KVM_CAP_XSAVE2 = 208;
    public static final int KVM_CAP_VM_TSC_CONTROL = 214;

    // ---- flags ----------------------------------------------------------------------------------
    /* kvm_userspace_memory_region.flags */
    public static final int KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
    public static final int KVM_MEM_READONLY = 1 << 1;

    /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 args[0] */
    public static final int KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1 << 0;
    public static final int KVM_DIRTY_LOG_INITIALLY_SET = 1 << 1;

    /* For KVM_CAP_ADJUST_CLOCK: kvm_clock_data.flags */
    /* Do not use 1, KVM_CHECK_EXTENSION returned it before we had flags.  */
    public static final int KVM_CLOCK_TSC_STABLE = 2;
    public static final int KVM_CLOCK_REALTIME = 1 << 2;
    public static final int KVM_CLOCK_HOST_TSC = 1 << 3;

    // ---- exit reasons (kvm_run.exit_reason) -----------------------------------------------------
    public static final int KVM_EXIT_UNKNOWN = 0;
    public static final int KVM_EXIT_EXCEPTION = 1;
    public static final int KVM_EXIT_IO = 2;
    public static final int KVM_EXIT_HYPERCALL = 3;
    public static final int KVM_EXIT_DEBUG = 4;
    public static final int KVM_EXIT_HLT = 5;
    public static final int KVM_EXIT_MMIO = 6;
    public static final int KVM_EXIT_IRQ_WINDOW_OPEN = 7;
    public static final int KVM_EXIT_SHUTDOWN = 8;
    public static final int KVM_EXIT_FAIL_ENTRY = 9;
    public static final int KVM_EXIT_INTR = 10;
    public static final int KVM_EXIT_SET_TPR = 11;
    public static final int KVM_EXIT_TPR_ACCESS = 12;
    public static final int KVM_EXIT_NMI = 16;
    public static final int KVM_EXIT_INTERNAL_ERROR = 17;
    public static final int KVM_EXIT_WATCHDOG = 21;
    public static final int KVM_EXIT_EPR = 23;
    public static final int KVM_EXIT_SYSTEM_EVENT = 24;
    public static final int KVM_EXIT_IOAPIC_EOI = 26;
    public static final int KVM_EXIT_HYPERV = 27;
    public static final int KVM_EXIT_X86_RDMSR = 29;
    public static final int KVM_EXIT_X86_WRMSR = 30;
    public static final int KVM_EXIT_DIRTY_RING_FULL = 31;
    public static final int KVM_EXIT_AP_RESET_HOLD = 32;
    public static final int KVM_EXIT_X86_BUS_LOCK = 33;
    public static final int KVM_EXIT_XEN = 34;
    public static final int KVM_EXIT_NOTIFY = 37;

    /* kvm_run.io.direction */
    public static final int KVM_EXIT_IO_IN = 0;
    public static final int KVM_EXIT_IO_OUT = 1;

    /* For KVM_EXIT_INTERNAL_ERROR */
    /* Emulate instruction failed. */
    public static final int KVM_INTERNAL_ERROR_EMULATION = 1;
    /* Encounter unexpected simultaneous exceptions. */
    public static final int KVM_INTERNAL_ERROR_SIMUL_EX = 2;
    /* Encounter unexpected vm-exit due to delivery event. */
    public static final int KVM_INTERNAL_ERROR_DELIVERY_EV = 3;
    /* Encounter unexpected vm-exit reason */
    public static final int KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4;

    /* For KVM_EXIT_SYSTEM_EVENT: kvm_run.system_event.type */
    public static final int KVM_SYSTEM_EVENT_SHUTDOWN = 1;
    public static final int KVM_SYSTEM_EVENT_RESET = 2;
    public static final int KVM_SYSTEM_EVENT_CRASH = 3;
    public static final int KVM_SYSTEM_EVENT_WAKEUP = 4;
    public static final int KVM_SYSTEM_EVENT_SUSPEND = 5;
    public static final int KVM_SYSTEM_EVENT_SEV_TERM = 6;

    // ---- MP states (KVM_GET/SET_MP_STATE); not all states are valid on all architectures --------
    public static final int KVM_MP_STATE_RUNNABLE = 0;
    public static final int KVM_MP_STATE_UNINITIALIZED = 1;
    public static final int KVM_MP_STATE_INIT_RECEIVED = 2;
    public static final int KVM_MP_STATE_HALTED = 3;
    public static final int KVM_MP_STATE_SIPI_RECEIVED = 4;
    public static final int KVM_MP_STATE_STOPPED = 5;
    public static final int KVM_MP_STATE_CHECK_STOP = 6;
    public static final int KVM_MP_STATE_OPERATING = 7;
    public static final int KVM_MP_STATE_LOAD = 8;
    public static final int KVM_MP_STATE_AP_RESET_HOLD = 9;
    public static final int KVM_MP_STATE_SUSPENDED = 10;

    /** Symbolic name of a KVM_EXIT_* value, e.g. {@code "KVM_EXIT_IO"}; {@code "KVM_EXIT_#n"} if unknown. */
    public static String exitReasonName(int reason) {
        return switch (reason) {
            case KVM_EXIT_UNKNOWN -> "KVM_EXIT_UNKNOWN";
            case KVM_EXIT_EXCEPTION -> "KVM_EXIT_EXCEPTION";
            case KVM_EXIT_IO -> "KVM_EXIT_IO";
            case KVM_EXIT_HYPERCALL -> "KVM_EXIT_HYPERCALL";
            case KVM_EXIT_DEBUG -> "KVM_EXIT_DEBUG";
            case KVM_EXIT_HLT -> "KVM_EXIT_HLT";
            case KVM_EXIT_MMIO -> "KVM_EXIT_MMIO";
            case KVM_EXIT_IRQ_WINDOW_OPEN -> "KVM_EXIT_IRQ_WINDOW_OPEN";
            case KVM_EXIT_SHUTDOWN -> "KVM_EXIT_SHUTDOWN";
            case KVM_EXIT_FAIL_ENTRY -> "KVM_EXIT_FAIL_ENTRY";
            case KVM_EXIT_INTR -> "KVM_EXIT_INTR";
            case KVM_EXIT_SET_TPR -> "KVM_EXIT_SET_TPR";
            case KVM_EXIT_TPR_ACCESS -> "KVM_EXIT_TPR_ACCESS";
            case KVM_EXIT_NMI -> "KVM_EXIT_NMI";
            case KVM_EXIT_INTERNAL_ERROR -> "KVM_EXIT_INTERNAL_ERROR";
            case KVM_EXIT_WATCHDOG -> "KVM_EXIT_WATCHDOG";
            case KVM_EXIT_EPR -> "KVM_EXIT_EPR";
            case KVM_EXIT_SYSTEM_EVENT -> "KVM_EXIT_SYSTEM_EVENT";
            case KVM_EXIT_IOAPIC_EOI -> "KVM_EXIT_IOAPIC_EOI";
            case KVM_EXIT_HYPERV -> "KVM_EXIT_HYPERV";
            case KVM_EXIT_X86_RDMSR -> "KVM_EXIT_X86_RDMSR";
            case KVM_EXIT_X86_WRMSR -> "KVM_EXIT_X86_WRMSR";
            case KVM_EXIT_DIRTY_RING_FULL -> "KVM_EXIT_DIRTY_RING_FULL";
            case KVM_EXIT_AP_RESET_HOLD -> "KVM_EXIT_AP_RESET_HOLD";
            case KVM_EXIT_X86_BUS_LOCK -> "KVM_EXIT_X86_BUS_LOCK";
            case KVM_EXIT_XEN -> "KVM_EXIT_XEN";
            case KVM_EXIT_NOTIFY -> "KVM_EXIT_NOTIFY";
            default -> "KVM_EXIT_#" + reason;
        };
    }

    /** Symbolic name of a KVM_MP_STATE_* value. */
    public static String mpStateName(int state) {
        return switch (state) {
            case KVM_MP_STATE_RUNNABLE -> "KVM_MP_STATE_RUNNABLE";
            case KVM_MP_STATE_UNINITIALIZED -> "KVM_MP_STATE_UNINITIALIZED";
            case KVM_MP_STATE_INIT_RECEIVED -> "KVM_MP_STATE_INIT_RECEIVED";
            case KVM_MP_STATE_HALTED -> "KVM_MP_STATE_HALTED";
            case KVM_MP_STATE_SIPI_RECEIVED -> "KVM_MP_STATE_SIPI_RECEIVED";
            case KVM_MP_STATE_STOPPED -> "KVM_MP_STATE_STOPPED";
            case KVM_MP_STATE_CHECK_STOP -> "KVM_MP_STATE_CHECK_STOP";
            case KVM_MP_STATE_OPERATING -> "KVM_MP_STATE_OPERATING";
            case KVM_MP_STATE_LOAD -> "KVM_MP_STATE_LOAD";
            case KVM_MP_STATE_AP_RESET_HOLD -> "KVM_MP_STATE_AP_RESET_HOLD";
            case KVM_MP_STATE_SUSPENDED -> "KVM_MP_STATE_SUSPENDED";
            default -> "KVM_MP_STATE_#" + state;
        };
    }
}
