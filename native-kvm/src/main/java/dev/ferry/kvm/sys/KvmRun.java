package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Accessor for a vCPU's mmap'ed {@code struct kvm_run} (linux/kvm.h). Not a JNA Structure: the
 * page is shared with the kernel and the run loop reads a handful of fields per exit, so each
 * accessor reads or writes exactly one field at its C offset, through a direct ByteBuffer (no JNI
 * call, no allocation). The OFF_* offsets are checked against gcc's offsetof by
 * {@code StructLayoutTest}.
 *
 * <p>Only valid while the owning {@link KvmVcpu} is open: after {@link KvmVcpu#close()} the page
 * is unmapped and touching it would crash the JVM. Fields are only meaningful on the vCPU thread
 * between KVM_RUN calls, except {@link #setImmediateExit(boolean)}, which another thread may set
 * to make the next (or a racing) KVM_RUN return EINTR.
 */
public final class KvmRun {
    /* in */
    public static final int OFF_REQUEST_INTERRUPT_WINDOW = 0; /* __u8 */
    public static final int OFF_IMMEDIATE_EXIT = 1; /* __u8 */
    /* out */
    public static final int OFF_EXIT_REASON = 8; /* __u32 */
    public static final int OFF_READY_FOR_INTERRUPT_INJECTION = 12; /* __u8 */
    public static final int OFF_IF_FLAG = 13; /* __u8 */
    public static final int OFF_FLAGS = 14; /* __u16 */
    /* in (pre_kvm_run), out (post_kvm_run) */
    public static final int OFF_CR8 = 16; /* __u64 */
    public static final int OFF_APIC_BASE = 24; /* __u64 */

    /** Start of the anonymous exit union (256 bytes) on x86-64. */
    public static final int OFF_EXIT_UNION = 32;
    /* KVM_EXIT_UNKNOWN: hw */
    public static final int OFF_HW_HARDWARE_EXIT_REASON = OFF_EXIT_UNION; /* __u64 */
    /* KVM_EXIT_FAIL_ENTRY: fail_entry */
    public static final int OFF_FAIL_ENTRY_HARDWARE_ENTRY_FAILURE_REASON = OFF_EXIT_UNION; /* __u64 */
    public static final int OFF_FAIL_ENTRY_CPU = OFF_EXIT_UNION + 8; /* __u32 */
    /* KVM_EXIT_EXCEPTION: ex */
    public static final int OFF_EX_EXCEPTION = OFF_EXIT_UNION; /* __u32 */
    public static final int OFF_EX_ERROR_CODE = OFF_EXIT_UNION + 4; /* __u32 */
    /* KVM_EXIT_IO: io */
    public static final int OFF_IO_DIRECTION = OFF_EXIT_UNION; /* __u8 KVM_EXIT_IO_IN / _OUT */
    public static final int OFF_IO_SIZE = OFF_EXIT_UNION + 1; /* __u8 bytes */
    public static final int OFF_IO_PORT = OFF_EXIT_UNION + 2; /* __u16 */
    public static final int OFF_IO_COUNT = OFF_EXIT_UNION + 4; /* __u32 */
    public static final int OFF_IO_DATA_OFFSET = OFF_EXIT_UNION + 8; /* __u64 relative to kvm_run start */
    /* KVM_EXIT_MMIO: mmio */
    public static final int OFF_MMIO_PHYS_ADDR = OFF_EXIT_UNION; /* __u64 */
    public static final int OFF_MMIO_DATA = OFF_EXIT_UNION + 8; /* __u8 data[8] */
    public static final int OFF_MMIO_LEN = OFF_EXIT_UNION + 16; /* __u32 */
    public static final int OFF_MMIO_IS_WRITE = OFF_EXIT_UNION + 20; /* __u8 */
    /* KVM_EXIT_INTERNAL_ERROR: internal */
    public static final int OFF_INTERNAL_SUBERROR = OFF_EXIT_UNION; /* __u32 */
    public static final int OFF_INTERNAL_NDATA = OFF_EXIT_UNION + 4; /* __u32 */
    public static final int OFF_INTERNAL_DATA = OFF_EXIT_UNION + 8; /* __u64 data[16] */
    /* KVM_EXIT_SYSTEM_EVENT: system_event */
    public static final int OFF_SYSTEM_EVENT_TYPE = OFF_EXIT_UNION; /* __u32 */
    public static final int OFF_SYSTEM_EVENT_NDATA = OFF_EXIT_UNION + 4; /* __u32 */
    public static final int OFF_SYSTEM_EVENT_DATA = OFF_EXIT_UNION + 8; /* __u64 data[16] (flags) */
    /* KVM_EXIT_X86_RDMSR / KVM_EXIT_X86_WRMSR: msr */
    public static final int OFF_MSR_ERROR = OFF_EXIT_UNION; /* __u8 user -> kernel */
    public static final int OFF_MSR_REASON = OFF_EXIT_UNION + 8; /* __u32 kernel -> user */
    public static final int OFF_MSR_INDEX = OFF_EXIT_UNION + 12; /* __u32 kernel -> user */
    public static final int OFF_MSR_DATA = OFF_EXIT_UNION + 16; /* __u64 kernel <-> user */
    /** Size of the exit union ({@code char padding[256]}). */
    public static final int EXIT_UNION_SIZE = 256;
    public static final int OFF_KVM_VALID_REGS = OFF_EXIT_UNION + EXIT_UNION_SIZE; /* __u64 */
    public static final int OFF_KVM_DIRTY_REGS = OFF_KVM_VALID_REGS + 8; /* __u64 */
    public static final int OFF_S = OFF_KVM_DIRTY_REGS + 8; /* union { struct kvm_sync_regs; char padding[2048]; } */
    /** sizeof(struct kvm_run) (the mapping itself is KVM_GET_VCPU_MMAP_SIZE, several pages). */
    public static final int SIZEOF_KVM_RUN = OFF_S + 2048;

    private final Pointer base;
    private final long size;
    private final ByteBuffer buf;
    private long cachedIoDataOffset = -1;
    private Pointer cachedIoData;

    /** Wraps {@code size} bytes at {@code base} (the mmap of the vCPU fd, offset 0). */
    public KvmRun(Pointer base, long size) {
        if (size < SIZEOF_KVM_RUN) {
            throw new IllegalArgumentException("kvm_run mapping of " + size + " bytes is smaller than struct kvm_run");
        }
        this.base = base;
        this.size = size;
        this.buf = base.getByteBuffer(0, size).order(ByteOrder.nativeOrder());
    }

    /** The start of the mapping. */
    public Pointer pointer() {
        return base;
    }

    /** Size of the mapping (KVM_GET_VCPU_MMAP_SIZE). */
    public long size() {
        return size;
    }

    /** A direct view of the whole mapping (native byte order); it shares the kernel's page. */
    public ByteBuffer buffer() {
        return buf.duplicate().order(ByteOrder.nativeOrder());
    }

    // ---- in ---------------------------------------------------------------------------------------

    public boolean requestInterruptWindow() {
        return buf.get(OFF_REQUEST_INTERRUPT_WINDOW) != 0;
    }

    public void setRequestInterruptWindow(boolean request) {
        buf.put(OFF_REQUEST_INTERRUPT_WINDOW, (byte) (request ? 1 : 0));
    }

    public boolean immediateExit() {
        return buf.get(OFF_IMMEDIATE_EXIT) != 0;
    }

    /** With KVM_CAP_IMMEDIATE_EXIT: while set, KVM_RUN returns EINTR without entering the guest. */
    public void setImmediateExit(boolean exit) {
        buf.put(OFF_IMMEDIATE_EXIT, (byte) (exit ? 1 : 0));
    }

    // ---- out --------------------------------------------------------------------------------------

    /** KVM_EXIT_* of the last KVM_RUN that returned 0. */
    public int exitReason() {
        return buf.getInt(OFF_EXIT_REASON);
    }

    public boolean readyForInterruptInjection() {
        return buf.get(OFF_READY_FOR_INTERRUPT_INJECTION) != 0;
    }

    public boolean ifFlag() {
        return buf.get(OFF_IF_FLAG) != 0;
    }

    /** KVM_RUN_X86_SMM (1), KVM_RUN_X86_BUS_LOCK (2). */
    public int flags() {
        return buf.getShort(OFF_FLAGS) & 0xffff;
    }

    public long cr8() {
        return buf.getLong(OFF_CR8);
    }

    public void setCr8(long cr8) {
        buf.putLong(OFF_CR8, cr8);
    }

    public long apicBase() {
        return buf.getLong(OFF_APIC_BASE);
    }

    // ---- KVM_EXIT_UNKNOWN / KVM_EXIT_FAIL_ENTRY / KVM_EXIT_EXCEPTION ------------------------------

    public long hardwareExitReason() {
        return buf.getLong(OFF_HW_HARDWARE_EXIT_REASON);
    }

    public long failEntryHardwareReason() {
        return buf.getLong(OFF_FAIL_ENTRY_HARDWARE_ENTRY_FAILURE_REASON);
    }

    public int failEntryCpu() {
        return buf.getInt(OFF_FAIL_ENTRY_CPU);
    }

    public int exceptionNumber() {
        return buf.getInt(OFF_EX_EXCEPTION);
    }

    public int exceptionErrorCode() {
        return buf.getInt(OFF_EX_ERROR_CODE);
    }

    // ---- KVM_EXIT_IO --------------------------------------------------------------------------------

    /** KVM_EXIT_IO_IN (0) or KVM_EXIT_IO_OUT (1). */
    public int ioDirection() {
        return buf.get(OFF_IO_DIRECTION) & 0xff;
    }

    /** Access width in bytes (1, 2 or 4). */
    public int ioSize() {
        return buf.get(OFF_IO_SIZE) & 0xff;
    }

    public int ioPort() {
        return buf.getShort(OFF_IO_PORT) & 0xffff;
    }

    /** Number of accesses (more than 1 for rep ins/outs); data is count * size bytes. */
    public int ioCount() {
        return buf.getInt(OFF_IO_COUNT);
    }

    /** Offset of the data from the start of kvm_run. */
    public long ioDataOffset() {
        return buf.getLong(OFF_IO_DATA_OFFSET);
    }

    /** Pointer to the I/O data (run + data_offset); cached while data_offset does not change. */
    public Pointer ioData() {
        long off = ioDataOffset();
        if (off != cachedIoDataOffset) {
            checkInside(off, (long) ioSize() * ioCount());
            cachedIoData = base.share(off);
            cachedIoDataOffset = off;
        }
        return cachedIoData;
    }

    /** Reads I/O data byte {@code i} without allocating. */
    public int ioDataByte(int i) {
        return buf.get(Math.toIntExact(ioDataOffset()) + i) & 0xff;
    }

    /** Reads the {@code size}-byte little-endian I/O value at index {@code i} (for count > 1). */
    public int ioDataValue(int i) {
        int off = Math.toIntExact(ioDataOffset()) + i * ioSize();
        return switch (ioSize()) {
            case 1 -> buf.get(off) & 0xff;
            case 2 -> buf.getShort(off) & 0xffff;
            case 4 -> buf.getInt(off);
            default -> throw new IllegalStateException("io size " + ioSize());
        };
    }

    /** Writes the {@code size}-byte I/O value at index {@code i} (the answer to an IN). */
    public void setIoDataValue(int i, int value) {
        int off = Math.toIntExact(ioDataOffset()) + i * ioSize();
        switch (ioSize()) {
            case 1 -> buf.put(off, (byte) value);
            case 2 -> buf.putShort(off, (short) value);
            case 4 -> buf.putInt(off, value);
            default -> throw new IllegalStateException("io size " + ioSize());
        }
    }

    // ---- KVM_EXIT_MMIO ------------------------------------------------------------------------------

    public long mmioPhysAddr() {
        return buf.getLong(OFF_MMIO_PHYS_ADDR);
    }

    public int mmioLen() {
        return buf.getInt(OFF_MMIO_LEN);
    }

    public boolean mmioIsWrite() {
        return buf.get(OFF_MMIO_IS_WRITE) != 0;
    }

    /** The 8 data bytes as a little-endian long (only the low {@link #mmioLen()} bytes matter). */
    public long mmioData() {
        return buf.getLong(OFF_MMIO_DATA);
    }

    /** Sets the data a read returns (low {@link #mmioLen()} bytes are used). */
    public void setMmioData(long value) {
        buf.putLong(OFF_MMIO_DATA, value);
    }

    public Pointer mmioDataPointer() {
        return base.share(OFF_MMIO_DATA, 8);
    }

    // ---- KVM_EXIT_INTERNAL_ERROR ---------------------------------------------------------------------

    /** KVM_INTERNAL_ERROR_*. */
    public int internalSuberror() {
        return buf.getInt(OFF_INTERNAL_SUBERROR);
    }

    public int internalNdata() {
        return buf.getInt(OFF_INTERNAL_NDATA);
    }

    public long internalData(int i) {
        return buf.getLong(OFF_INTERNAL_DATA + 8 * java.util.Objects.checkIndex(i, 16));
    }

    // ---- KVM_EXIT_SYSTEM_EVENT -----------------------------------------------------------------------

    /** KVM_SYSTEM_EVENT_*. */
    public int systemEventType() {
        return buf.getInt(OFF_SYSTEM_EVENT_TYPE);
    }

    public int systemEventNdata() {
        return buf.getInt(OFF_SYSTEM_EVENT_NDATA);
    }

    public long systemEventData(int i) {
        return buf.getLong(OFF_SYSTEM_EVENT_DATA + 8 * java.util.Objects.checkIndex(i, 16));
    }

    // ---- KVM_EXIT_X86_RDMSR / KVM_EXIT_X86_WRMSR --------------------------------------------------------

    public int msrIndex() {
        return buf.getInt(OFF_MSR_INDEX);
    }

    public int msrReason() {
        return buf.getInt(OFF_MSR_REASON);
    }

    public long msrData() {
        return buf.getLong(OFF_MSR_DATA);
    }

    public void setMsrData(long value) {
        buf.putLong(OFF_MSR_DATA, value);
    }

    /** Non-zero makes the guest's RDMSR/WRMSR raise #GP. */
    public void setMsrError(int error) {
        buf.put(OFF_MSR_ERROR, (byte) error);
    }

    @Override
    public String toString() {
        return "KvmRun{" + KvmIoctls.exitReasonName(exitReason()) + "}";
    }

    private void checkInside(long off, long len) {
        if (off < 0 || len < 0 || off + len > size) {
            throw new IllegalStateException("kvm_run data offset " + off + "+" + len + " outside mapping of " + size);
        }
    }
}
