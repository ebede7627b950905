package dev.ferry.kvm.sys;

import static dev.ferry.kvm.sys.KvmIoctls.*;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import java.util.concurrent.atomic.AtomicInteger;
import dev.ferry.linux.Fd;
import dev.ferry.linux.LibC;
import dev.ferry.linux.NativeException;
import dev.ferry.linux.Signals;

/**
 * A vCPU fd plus its mmap'ed {@code kvm_run}. State getters/setters allocate a fresh structure
 * (or fill the one passed in); {@link #runOnce()} is the allocation-free hot path.
 *
 * <p>Kicking a vCPU out of KVM_RUN: see {@link Signals} and {@link #setSignalMask(int...)}.
 */
public final class KvmVcpu implements AutoCloseable {
    private final int id;
    private final AtomicInteger fd;
    private final Pointer runBase;
    private final long runSize;
    private final KvmRun run;

    KvmVcpu(int id, int fd, Pointer runBase, long runSize) {
        this.id = id;
        this.fd = new AtomicInteger(fd);
        this.runBase = runBase;
        this.runSize = runSize;
        this.run = new KvmRun(runBase, runSize);
    }

    public int id() {
        return id;
    }

    public int fd() {
        int f = fd.get();
        if (f < 0) {
            throw new IllegalStateException("vCPU " + id + " is closed");
        }
        return f;
    }

    /** The shared kvm_run page; valid until {@link #close()}. */
    public KvmRun run() {
        return run;
    }

    /**
     * One KVM_RUN. Returns 0 when the guest exited to userspace (see {@link KvmRun#exitReason()}),
     * or the negative errno: {@code -EINTR} when a signal (the kick) or immediate_exit stopped it,
     * {@code -EAGAIN}, {@code -EFAULT}, ... Never throws and never allocates. After close it
     * returns {@code -EBADF}.
     */
    public int runOnce() {
        int rc = LibC.ioctl(fd.get(), KVM_RUN, 0L);
        return rc < 0 ? -Native.getLastError() : rc;
    }

    // ---- registers ---------------------------------------------------------------------------------

    public KvmRegs getRegs() {
        return getRegs(new KvmRegs());
    }

    public KvmRegs getRegs(KvmRegs out) {
        return Fd.get(fd(), KVM_GET_REGS, out, "KVM_GET_REGS");
    }

    public void setRegs(KvmRegs regs) {
        Fd.set(fd(), KVM_SET_REGS, regs, "KVM_SET_REGS");
    }

    public KvmSregs getSregs() {
        return getSregs(new KvmSregs());
    }

    public KvmSregs getSregs(KvmSregs out) {
        return Fd.get(fd(), KVM_GET_SREGS, out, "KVM_GET_SREGS");
    }

    public void setSregs(KvmSregs sregs) {
        Fd.set(fd(), KVM_SET_SREGS, sregs, "KVM_SET_SREGS");
    }

    public KvmFpu getFpu() {
        return Fd.get(fd(), KVM_GET_FPU, new KvmFpu(), "KVM_GET_FPU");
    }

    public void setFpu(KvmFpu fpu) {
        Fd.set(fd(), KVM_SET_FPU, fpu, "KVM_SET_FPU");
    }

    /** KVM_GET_XSAVE: the legacy 4096-byte area (see {@link KvmXsave}). */
    public KvmXsave getXsave() {
        return Fd.get(fd(), KVM_GET_XSAVE, new KvmXsave(), "KVM_GET_XSAVE");
    }

    public void setXsave(KvmXsave xsave) {
        Fd.set(fd(), KVM_SET_XSAVE, xsave, "KVM_SET_XSAVE");
    }

    public KvmXcrs getXcrs() {
        return getXcrs(new KvmXcrs());
    }

    public KvmXcrs getXcrs(KvmXcrs out) {
        return Fd.get(fd(), KVM_GET_XCRS, out, "KVM_GET_XCRS");
    }

    public void setXcrs(KvmXcrs xcrs) {
        Fd.set(fd(), KVM_SET_XCRS, xcrs, "KVM_SET_XCRS");
    }

    /**
     * KVM_GET_MSRS for {@code indices}; throws {@link MsrAccessException} if KVM processed fewer
     * entries than asked (it stops at the first MSR it refuses).
     */
    public long[] getMsrs(int[] indices) {
        KvmMsrs msrs = KvmMsrs.of(indices);
        int n = Fd.ioctl(fd(), KVM_GET_MSRS, msrs.pointer(), "KVM_GET_MSRS");
        if (n != indices.length) {
            throw new MsrAccessException("KVM_GET_MSRS", n, indices);
        }
        return msrs.data();
    }

    /** KVM_SET_MSRS; throws {@link MsrAccessException} if KVM processed fewer entries than asked. */
    public void setMsrs(int[] indices, long[] values) {
        KvmMsrs msrs = KvmMsrs.of(indices, values);
        int n = Fd.ioctl(fd(), KVM_SET_MSRS, msrs.pointer(), "KVM_SET_MSRS");
        if (n != indices.length) {
            throw new MsrAccessException("KVM_SET_MSRS", n, indices);
        }
    }

    /** Sizes of the structures a snapshot keeps as the kernel's bytes. */
    public static final int XSAVE_BYTES = new KvmXsave().size();
    public static final int LAPIC_BYTES = new KvmLapicState().size();
    public static final int VCPU_EVENTS_BYTES = new KvmVcpuEvents().size();

    /** KVM_GET_XSAVE as raw bytes: device state keeps these, so the structure's fields are skipped. */
    public byte[] getXsaveBytes() {
        return getRaw(KVM_GET_XSAVE, XSAVE_BYTES, "KVM_GET_XSAVE");
    }

    /** KVM_SET_XSAVE from raw bytes ({@link #XSAVE_BYTES} long). */
    public void setXsaveBytes(byte[] raw) {
        setRaw(KVM_SET_XSAVE, raw, XSAVE_BYTES, "KVM_SET_XSAVE");
    }

    public byte[] getLapicBytes() {
        return getRaw(KVM_GET_LAPIC, LAPIC_BYTES, "KVM_GET_LAPIC");
    }

    public void setLapicBytes(byte[] raw) {
        setRaw(KVM_SET_LAPIC, raw, LAPIC_BYTES, "KVM_SET_LAPIC");
    }

    public byte[] getVcpuEventsBytes() {
        return getRaw(KVM_GET_VCPU_EVENTS, VCPU_EVENTS_BYTES, "KVM_GET_VCPU_EVENTS");
    }

    public void setVcpuEventsBytes(byte[] raw) {
        setRaw(KVM_SET_VCPU_EVENTS, raw, VCPU_EVENTS_BYTES, "KVM_SET_VCPU_EVENTS");
    }

    /*
     * Raw ioctls on a plain buffer: a JNA Structure of these (the 4 KiB xsave is an int[1024]) costs its
     * layout, a reflective read of every member and a write back before its bytes can be copied.
     */
    private byte[] getRaw(long request, int size, String op) {
        try (Memory buf = new Memory(size)) {
            buf.clear();
            Fd.ioctl(fd(), request, buf, op);
            return buf.getByteArray(0, size);
        }
    }

    private void setRaw(long request, byte[] raw, int size, String op) {
        if (raw.length != size) {
            throw new IllegalArgumentException(op + " takes " + size + " bytes, got " + raw.length);
        }
        try (Memory buf = new Memory(size)) {
            buf.write(0, raw, 0, size);
            Fd.ioctl(fd(), request, buf, op);
        }
    }

    public KvmLapicState getLapic() {
        return Fd.get(fd(), KVM_GET_LAPIC, new KvmLapicState(), "KVM_GET_LAPIC");
    }

    public void setLapic(KvmLapicState lapic) {
        Fd.set(fd(), KVM_SET_LAPIC, lapic, "KVM_SET_LAPIC");
    }

    public KvmVcpuEvents getVcpuEvents() {
        return Fd.get(fd(), KVM_GET_VCPU_EVENTS, new KvmVcpuEvents(), "KVM_GET_VCPU_EVENTS");
    }

    public void setVcpuEvents(KvmVcpuEvents events) {
        Fd.set(fd(), KVM_SET_VCPU_EVENTS, events, "KVM_SET_VCPU_EVENTS");
    }

    public KvmMpState getMpState() {
        return getMpState(new KvmMpState());
    }

    public KvmMpState getMpState(KvmMpState out) {
        return Fd.get(fd(), KVM_GET_MP_STATE, out, "KVM_GET_MP_STATE");
    }

    public void setMpState(KvmMpState state) {
        Fd.set(fd(), KVM_SET_MP_STATE, state, "KVM_SET_MP_STATE");
    }

    /** KVM_SET_MP_STATE with a KVM_MP_STATE_* value. */
    public void setMpState(int mpState) {
        setMpState(new KvmMpState(mpState));
    }

    public KvmDebugregs getDebugregs() {
        return getDebugregs(new KvmDebugregs());
    }

    public KvmDebugregs getDebugregs(KvmDebugregs out) {
        return Fd.get(fd(), KVM_GET_DEBUGREGS, out, "KVM_GET_DEBUGREGS");
    }

    public void setDebugregs(KvmDebugregs regs) {
        Fd.set(fd(), KVM_SET_DEBUGREGS, regs, "KVM_SET_DEBUGREGS");
    }

    // ---- CPUID / TSC / caps ------------------------------------------------------------------------------

    /** KVM_SET_CPUID2 with the first {@link KvmCpuid2#nent()} entries. */
    public void setCpuid2(KvmCpuid2 cpuid) {
        Fd.ioctl(fd(), KVM_SET_CPUID2, cpuid.pointer(), "KVM_SET_CPUID2");
    }

    /** KVM_GET_CPUID2 (E2BIG if the vCPU has more than {@code maxEntries} entries). */
    public KvmCpuid2 getCpuid2(int maxEntries) {
        KvmCpuid2 cpuid = new KvmCpuid2(maxEntries);
        Fd.ioctl(fd(), KVM_GET_CPUID2, cpuid.pointer(), "KVM_GET_CPUID2");
        return cpuid;
    }

    /** KVM_GET_TSC_KHZ: the guest TSC frequency. */
    public int getTscKhz() {
        return Fd.ioctl(fd(), KVM_GET_TSC_KHZ, 0L, "KVM_GET_TSC_KHZ");
    }

    /** KVM_SET_TSC_KHZ (KVM_CAP_TSC_CONTROL): scale the guest TSC, e.g. to the source host's rate. */
    public void setTscKhz(int khz) {
        Fd.ioctl(fd(), KVM_SET_TSC_KHZ, khz, "KVM_SET_TSC_KHZ");
    }

    /** KVM_ENABLE_CAP on the vCPU fd, args[0] = arg0. */
    public void enableCap(int cap, long arg0) {
        KvmEnableCap c = new KvmEnableCap();
        c.cap = cap;
        c.args[0] = arg0;
        Fd.set(fd(), KVM_ENABLE_CAP, c, "KVM_ENABLE_CAP(" + cap + ")");
    }

    /** KVM_NMI: queue an NMI (without in-kernel irqchip LINT1 routing). */
    public void nmi() {
        Fd.ioctl(fd(), KVM_NMI, 0L, "KVM_NMI");
    }

    // ---- signals -----------------------------------------------------------------------------------

    /**
     * KVM_SET_SIGNAL_MASK with the mask KVM_RUN should run under: the <em>calling thread's</em>
     * current mask minus {@code unblockedSignals}. Call it on the vCPU thread after
     * {@link Signals#blockOnCurrentThread(int)}, normally as
     * {@code setSignalMask(Signals.KICK_SIGNAL)}; see {@link Signals} for the whole scheme.
     *
     * <p>With no arguments the run mask equals the thread's mask, so a blocked kick signal stays
     * blocked inside KVM_RUN and cannot interrupt a running guest. For "nothing blocked while in
     * the guest" use {@link #setRunSignalMask(long) setRunSignalMask(0)}.
     */
    public void setSignalMask(int... unblockedSignals) {
        setRunSignalMask(Signals.currentThreadMask() & ~Signals.kernelSigsetBits(unblockedSignals));
    }

    /** KVM_SET_SIGNAL_MASK with explicit kernel sigset bits (bit n-1 = signal n blocked). */
    public void setRunSignalMask(long kernelSigsetBits) {
        KvmSignalMask mask = new KvmSignalMask(kernelSigsetBits);
        Fd.ioctl(fd(), KVM_SET_SIGNAL_MASK, mask.pointer(), "KVM_SET_SIGNAL_MASK");
    }

    /** KVM_SET_SIGNAL_MASK(NULL): KVM_RUN runs with the thread's own mask again. */
    public void clearSignalMask() {
        Fd.ioctl(fd(), KVM_SET_SIGNAL_MASK, Pointer.NULL, "KVM_SET_SIGNAL_MASK");
    }

    /** Unmaps kvm_run and closes the vCPU fd. Idempotent. Not while another thread uses {@link #run()}. */
    @Override
    public void close() {
        int f = fd.getAndSet(-1);
        if (f < 0) {
            return;
        }
        int rc = LibC.munmap(runBase, runSize);
        int errno = rc < 0 ? Native.getLastError() : 0;
        Fd.close(f, "kvm-vcpu:" + id);
        if (rc < 0) {
            throw new NativeException("munmap(kvm_run)", errno);
        }
    }

    @Override
    public String toString() {
        return "KvmVcpu{id=" + id + ", fd=" + fd.get() + "}";
    }
}
