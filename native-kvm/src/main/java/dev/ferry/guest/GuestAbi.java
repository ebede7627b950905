package dev.ferry.guest;

/**
 * The VMM side of the guest ABI in {@code src/main/guest/abi.h}. {@code GuestAbiTest} compiles the
 * header with gcc and checks every constant here against it.
 */
public final class GuestAbi {
    private GuestAbi() {}

    public static final long PAGE_SIZE = 4096;
    public static final long HUGE_PAGE_SIZE = 2L << 20;

    public static final long GDT_GPA = 0x1000;
    public static final long TSS_GPA = 0xA000;
    public static final long TSS_LIMIT = 104 + 8192;
    public static final long PML4_GPA = 0x3000;
    public static final long PDPT_GPA = 0x4000;
    public static final long PARAMS_GPA = 0x6000;
    public static final long STATUS_GPA = 0x7000;
    public static final long STATUS_STRIDE = 64;
    public static final long MAX_VCPUS = 64;
    public static final long BOOT_STACK_GPA = 0x9000;
    public static final long BOOT_FRAME_STRIDE = 64;
    public static final long CODE_GPA = 0x10000;
    public static final long CODE_MAX = 0x10000;
    public static final long PD_GPA = 0x20000;
    public static final long PD_MAX_PAGES = 32;
    public static final long USER_STACK_TOP = 0xC0000;
    public static final long USER_STACK_SIZE = 0x1000;
    public static final long VCPU_STATE_GPA = 0x40000;
    public static final long VCPU_STATE_STRIDE = 256;
    public static final long GEN_GPA = 0x100000;

    public static final int PORT_PROGRESS = 0x510;
    public static final int PORT_RESULT = 0x511;
    public static final int PORT_EVENT = 0x512;
    public static final int PORT_COM1 = 0x3f8;

    public static final int CMD_NONE = 0;
    public static final int CMD_SELF_CHECK = 1;

    public static final int EVENT_STARTED = 1;
    public static final int EVENT_FILL_DONE = 2;
    public static final int EVENT_BAD_PARAMS = 0xbad;

    public static final int PATTERN_SEQUENTIAL = 1;
    public static final int PATTERN_RANDOM = 2;
    public static final int PATTERN_HOT_COLD = 3;

    public static final long MAGIC = 0x314c575952524546L;
    public static final long VERSION = 2;

    // Parameter block offsets (u64 each).
    public static final int P_MAGIC = 0;
    public static final int P_VERSION = 8;
    public static final int P_WS_BASE = 16;
    public static final int P_WS_PAGES = 24;
    public static final int P_GEN_BASE = 32;
    public static final int P_TSC_PER_PAGE = 40;
    public static final int P_QUIET = 48;
    public static final int P_PATTERN = 56;
    public static final int P_TSC_PER_REPORT = 64;
    public static final int P_SEED = 72;
    public static final int P_HOT_PAGES = 80;
    public static final int P_HOT_PERMILLE = 88;
    public static final int P_MAX_BACKLOG = 96;
    public static final int P_VCPUS = 104;
    public static final int P_MEM_BYTES = 112;
    public static final int P_WORD_STRIDE = 120;
    public static final int P_END = 128;

    // Status block offsets (u64 each), per vCPU.
    public static final int S_COUNTER = 0;
    public static final int S_PAGES_WRITTEN = 8;
    public static final int S_PHASE = 16;
    public static final int S_CHECKS = 24;
    public static final int S_LAST_WRONG = 32;
    public static final int S_REPORTS = 40;

    // Workload state block offsets (u64 each), per vCPU: the workload's whole loop state between two
    // steps (see workload_core.h). All zero = not started.
    public static final int V_STAGE = 0;
    public static final int V_RESUME = 8;
    public static final int V_FILL_POS = 16;
    public static final int V_SEQ = 24;
    public static final int V_RNG = 32;
    public static final int V_PACED_FROM = 40;
    public static final int V_OWED_WRITTEN = 48;
    public static final int V_NEXT_REPORT = 56;
    public static final int V_CHECK_POS = 64;
    public static final int V_CHECK_WRONG = 72;
    /** 1 while the port I/O request in V_IO_PORT..V_IO_VALUE is owed; the caller sets 0 once it did it. */
    public static final int V_IO_PENDING = 80;
    public static final int V_IO_PORT = 88;
    /** 1, 2 or 4. */
    public static final int V_IO_SIZE = 96;
    /** {@link #IO_OUT} or {@link #IO_IN}. */
    public static final int V_IO_DIR = 104;
    /** Out: the value to write. In: where the caller stores the value read. */
    public static final int V_IO_VALUE = 112;
    public static final int V_CON_LEN = 120;
    public static final int V_CON_POS = 128;
    public static final int V_CON_BUF = 136;
    public static final int V_END = 232;
    public static final int CON_MAX = 96;

    public static final int STAGE_NEW = 0;
    public static final int STAGE_FILLING = 1;
    public static final int STAGE_RUNNING = 2;

    public static final int RESUME_LOOP = 0;
    public static final int RESUME_ENTER = 1;
    public static final int RESUME_COMMAND = 2;
    public static final int RESUME_CHECK = 3;
    public static final int RESUME_AFTER_REPORT = 4;
    public static final int RESUME_CONSOLE = 5;
    public static final int RESUME_COUNT = 6;

    public static final int IO_OUT = 0;
    public static final int IO_IN = 1;

    // GDT selectors (see GuestLayout.writeGdt).
    public static final int SEL_KERNEL_CODE = 0x08;
    public static final int SEL_KERNEL_DATA = 0x10;
    public static final int SEL_USER_CODE = 0x18 | 3;
    public static final int SEL_USER_DATA = 0x20 | 3;
    public static final int SEL_TSS = 0x28;

    /** Where vCPU {@code index}'s status block lives. */
    public static long statusGpa(int vcpu) {
        return STATUS_GPA + vcpu * STATUS_STRIDE;
    }

    /** Where vCPU {@code index}'s workload state block lives. */
    public static long vcpuStateGpa(int vcpu) {
        return VCPU_STATE_GPA + vcpu * VCPU_STATE_STRIDE;
    }

    /**
     * The content of word {@code i} of working-set page {@code page} at generation {@code gen}, as
     * the guest writes it ({@code page_word} in workload_core.c); generation 0 means an all-zero page.
     */
    public static long pageWord(long page, int gen, int i) {
        return pageWord(page, gen, i, 1);
    }

    /** {@link #pageWord(long, int, int)} of a workload with word stride {@code stride}: only every stride-th word is data. */
    public static long pageWord(long page, int gen, int i, int stride) {
        if (gen == 0 || i % stride != 0) {
            return 0;
        }
        long base = mix64((page << 32) ^ Integer.toUnsignedLong(gen) ^ 0x46455252L);
        return (base + i * 0x9e3779b97f4a7c15L) | 1;
    }

    static long mix64(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }
}
