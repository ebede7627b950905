package dev.ferry.guest;

import dev.ferry.memory.GuestMemory;

/**
 * Where things sit in guest-physical memory for a given VM size and workload, and the code that
 * writes them. Every backend needs {@link #writeParameters}: the parameter block, and zeroed status
 * and workload state blocks (a state block of zeros is a workload not started). The KVM guest
 * also needs {@link #writeKvmBootStructures}: GDT, TSS, identity page tables with user 2 MiB pages,
 * one iretq frame per vCPU and the image. The guest never runs ring-0 code beyond the iretq that
 * drops it to ring 3 (ring 0 is emulated on PVM hosts; ring 3 runs natively).
 */
public final class GuestLayout {
    private final long memoryBytes;
    private final int vcpus;
    private final WorkloadSpec workload;
    private final long workingSetBase;

    public GuestLayout(long memoryBytes, int vcpus, WorkloadSpec workload) {
        this.memoryBytes = memoryBytes;
        this.vcpus = vcpus;
        this.workload = workload;
        if (vcpus < 1 || vcpus > GuestAbi.MAX_VCPUS) {
            throw new IllegalArgumentException("vCPU count must be within 1.." + GuestAbi.MAX_VCPUS + ", got " + vcpus);
        }
        if (memoryBytes > GuestAbi.PD_MAX_PAGES << 30) {
            throw new IllegalArgumentException("guest memory is limited to " + GuestAbi.PD_MAX_PAGES + " GiB");
        }
        long genEnd = GuestAbi.GEN_GPA + workload.workingSetPages() * 4;
        this.workingSetBase = alignUp(genEnd, GuestAbi.HUGE_PAGE_SIZE);
        if (workingSetBase + workload.workingSetBytes() > memoryBytes) {
            throw new IllegalArgumentException(String.format(
                    "working set of %d MiB does not fit in %d MiB of guest memory (at most %d MiB fits)",
                    workload.workingSetBytes() >> 20, memoryBytes >> 20, maxWorkingSet(memoryBytes) >> 20));
        }
        if (workload.workingSetPages() < vcpus) {
            throw new IllegalArgumentException("working set needs at least one page per vCPU");
        }
    }

    /** The largest working set that fits in {@code memoryBytes} (gen table and boot area included). */
    public static long maxWorkingSet(long memoryBytes) {
        // ws + ws/1024 (gen table) + 2 MiB alignment + low area must fit.
        long usable = memoryBytes - GuestAbi.GEN_GPA - GuestAbi.HUGE_PAGE_SIZE;
        long ws = usable * 1024 / 1025;
        return Math.max(0, ws - ws % GuestAbi.PAGE_SIZE);
    }

    public long workingSetBase() {
        return workingSetBase;
    }

    public long generationTableBase() {
        return GuestAbi.GEN_GPA;
    }

    public WorkloadSpec workload() {
        return workload;
    }

    public int vcpus() {
        return vcpus;
    }

    /** Top of the ring-0 stack of {@code vcpu}: RSP points at its iretq frame. */
    public static long bootFrameGpa(int vcpu) {
        return GuestAbi.BOOT_STACK_GPA - (vcpu + 1) * GuestAbi.BOOT_FRAME_STRIDE;
    }

    /** Writes everything the KVM guest needs before its first instruction. */
    public void writeBootStructures(GuestMemory mem, long tscKhz) {
        writeKvmBootStructures(mem);
        writeParameters(mem, tscKhz);
    }

    /**
     * The workload's part, which every backend needs: the parameter block for a TSC of
     * {@code tscKhz}, and the status and state blocks of every vCPU zeroed (not started).
     */
    public void writeParameters(GuestMemory mem, long tscKhz) {
        writeParams(mem, tscKhz);
        mem.write(GuestAbi.STATUS_GPA, new byte[(int) (GuestAbi.MAX_VCPUS * GuestAbi.STATUS_STRIDE)]);
        mem.write(GuestAbi.VCPU_STATE_GPA, new byte[(int) (GuestAbi.MAX_VCPUS * GuestAbi.VCPU_STATE_STRIDE)]);
    }

    /** The KVM guest's part: GDT, TSS, page tables, the iretq frames that drop it to ring 3, its image. */
    public void writeKvmBootStructures(GuestMemory mem) {
        writeGdt(mem);
        writeTss(mem);
        writePageTables(mem);
        for (int i = 0; i < vcpus; i++) {
            long f = bootFrameGpa(i);
            mem.putLong(f, GuestAbi.CODE_GPA + 2); // user_start: right after the 2-byte iretq
            mem.putLong(f + 8, GuestAbi.SEL_USER_CODE);
            mem.putLong(f + 16, 0x3002); // IOPL=3 (PVM ignores it; the TSS bitmap grants the ports), bit 1 set
            mem.putLong(f + 24, GuestAbi.USER_STACK_TOP - i * GuestAbi.USER_STACK_SIZE);
            mem.putLong(f + 32, GuestAbi.SEL_USER_DATA);
        }
        mem.write(GuestAbi.CODE_GPA, GuestImage.bytes());
    }

    private static void writeGdt(GuestMemory mem) {
        long g = GuestAbi.GDT_GPA;
        mem.putLong(g, 0);
        mem.putLong(g + 0x08, 0x00AF9A000000FFFFL); // kernel code, 64-bit
        mem.putLong(g + 0x10, 0x00CF92000000FFFFL); // kernel data
        mem.putLong(g + 0x18, 0x00AFFA000000FFFFL); // user code, 64-bit, DPL 3
        mem.putLong(g + 0x20, 0x00CFF2000000FFFFL); // user data, DPL 3
        long base = GuestAbi.TSS_GPA;
        long limit = GuestAbi.TSS_LIMIT;
        long low = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x8BL << 40) // present, busy 64-bit TSS
                | (((limit >> 16) & 0xF) << 48) | (((base >> 24) & 0xFF) << 56);
        mem.putLong(g + 0x28, low);
        mem.putLong(g + 0x30, base >>> 32);
    }

    /** Number of GDT bytes in use, for GDTR.limit + 1. */
    public static int gdtBytes() {
        return 7 * 8;
    }

    private static void writeTss(GuestMemory mem) {
        long t = GuestAbi.TSS_GPA;
        // Zeroed TSS, I/O map right after the 104-byte header: all 65536 ports allowed (zero bits),
        // then the required terminating 0xff byte.
        for (long off = 0; off <= GuestAbi.TSS_LIMIT; off += 8) {
            mem.putLong(t + off, 0);
        }
        mem.putShort(t + 102, (short) 104);
        mem.putByte(t + GuestAbi.TSS_LIMIT, (byte) 0xff);
    }

    private void writePageTables(GuestMemory mem) {
        long gibs = (memoryBytes + (1L << 30) - 1) >> 30;
        mem.putLong(GuestAbi.PML4_GPA, GuestAbi.PDPT_GPA | 7); // present, writable, user
        for (long g = 0; g < gibs; g++) {
            long pd = GuestAbi.PD_GPA + g * GuestAbi.PAGE_SIZE;
            mem.putLong(GuestAbi.PDPT_GPA + g * 8, pd | 7);
            for (long j = 0; j < 512; j++) {
                long addr = (g << 30) + (j << 21);
                mem.putLong(pd + j * 8, addr < memoryBytes ? addr | 0x87 : 0); // present, writable, user, 2 MiB
            }
        }
    }

    private void writeParams(GuestMemory mem, long tscKhz) {
        long p = GuestAbi.PARAMS_GPA;
        long tscHz = tscKhz * 1000;
        mem.putLong(p + GuestAbi.P_MAGIC, GuestAbi.MAGIC);
        mem.putLong(p + GuestAbi.P_VERSION, GuestAbi.VERSION);
        mem.putLong(p + GuestAbi.P_WS_BASE, workingSetBase);
        mem.putLong(p + GuestAbi.P_WS_PAGES, workload.workingSetPages());
        mem.putLong(p + GuestAbi.P_GEN_BASE, GuestAbi.GEN_GPA);
        long tscPerPage = 0;
        if (!workload.unlimited() && workload.dirtyRateBytesPerSecond() > 0) {
            // ticks per page = tsc_hz * 4096 / rate; at least 1 so "paced" never becomes "unlimited"
            tscPerPage = Math.max(1, (long) ((double) tscHz * GuestAbi.PAGE_SIZE / workload.dirtyRateBytesPerSecond()));
        }
        mem.putLong(p + GuestAbi.P_TSC_PER_PAGE, tscPerPage);
        mem.putLong(p + GuestAbi.P_QUIET, workload.quiet() ? 1 : 0);
        mem.putLong(p + GuestAbi.P_PATTERN, workload.pattern().abiValue);
        long perReport = Math.max(1, (long) ((double) tscHz * workload.reportPeriod().toNanos() / 1e9));
        mem.putLong(p + GuestAbi.P_TSC_PER_REPORT, perReport);
        mem.putLong(p + GuestAbi.P_SEED, workload.seed());
        mem.putLong(p + GuestAbi.P_HOT_PAGES, Math.max(1, workload.workingSetPages() * workload.hotPermille() / 1000));
        mem.putLong(p + GuestAbi.P_HOT_PERMILLE, workload.hotWritePermille());
        // Owe at most 10 ms of writes after a pause, so a resumed guest does not burst.
        long backlog = tscPerPage == 0 ? 0 : Math.max(1, tscHz / 100 / tscPerPage);
        mem.putLong(p + GuestAbi.P_MAX_BACKLOG, backlog);
        mem.putLong(p + GuestAbi.P_VCPUS, vcpus);
        mem.putLong(p + GuestAbi.P_MEM_BYTES, memoryBytes);
        mem.putLong(p + GuestAbi.P_WORD_STRIDE, workload.wordStride());
    }

    private static long alignUp(long v, long a) {
        return (v + a - 1) / a * a;
    }
}
