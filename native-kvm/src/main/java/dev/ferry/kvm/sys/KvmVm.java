package dev.ferry.kvm.sys;

import static dev.ferry.kvm.sys.KvmIoctls.*;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import java.util.concurrent.atomic.AtomicInteger;
import dev.ferry.linux.Fd;
import dev.ferry.linux.LibC;
import dev.ferry.linux.NativeException;

/**
 * A VM fd: memory slots, in-kernel irqchip/PIT/clock, dirty logging, vCPU creation. Thread-safe in
 * the sense that the kernel serializes the ioctls; closing while other threads still call in is
 * the caller's bug (they get EBADF, or worse if the fd number was reused).
 */
public final class KvmVm implements AutoCloseable {
    private final AtomicInteger fd;
    private final int vcpuMmapSize;

    KvmVm(int fd, int vcpuMmapSize) {
        this.fd = new AtomicInteger(fd);
        this.vcpuMmapSize = vcpuMmapSize;
    }

    public int fd() {
        int f = fd.get();
        if (f < 0) {
            throw new IllegalStateException("KvmVm is closed");
        }
        return f;
    }

    /** KVM_CHECK_EXTENSION on the VM fd (needs KVM_CAP_CHECK_EXTENSION_VM; answers for this VM). */
    public int checkExtension(int cap) {
        return Fd.ioctl(fd(), KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION(vm)");
    }

    /** KVM_ENABLE_CAP with args[0] = arg0. */
    public void enableCap(int cap, long arg0) {
        enableCap(cap, 0, arg0, 0, 0, 0);
    }

    public void enableCap(int cap, int flags, long arg0, long arg1, long arg2, long arg3) {
        KvmEnableCap c = new KvmEnableCap();
        c.cap = cap;
        c.flags = flags;
        c.args[0] = arg0;
        c.args[1] = arg1;
        c.args[2] = arg2;
        c.args[3] = arg3;
        Fd.set(fd(), KVM_ENABLE_CAP, c, "KVM_ENABLE_CAP(" + cap + ")");
    }

    /** KVM_SET_USER_MEMORY_REGION; size 0 deletes the slot. */
    public void setUserMemoryRegion(int slot, int flags, long guestPhysAddr, long size, long userspaceAddr) {
        KvmUserspaceMemoryRegion r = new KvmUserspaceMemoryRegion();
        r.slot = slot;
        r.flags = flags;
        r.guest_phys_addr = guestPhysAddr;
        r.memory_size = size;
        r.userspace_addr = userspaceAddr;
        Fd.set(fd(), KVM_SET_USER_MEMORY_REGION, r, "KVM_SET_USER_MEMORY_REGION");
    }

    /** KVM_CREATE_IRQCHIP: in-kernel PIC x2, IOAPIC and per-vCPU LAPIC. Must precede vCPU creation. */
    public void createIrqchip() {
        Fd.ioctl(fd(), KVM_CREATE_IRQCHIP, 0L, "KVM_CREATE_IRQCHIP");
    }

    /** KVM_CREATE_PIT2 (after the irqchip); flags e.g. KVM_PIT_SPEAKER_DUMMY. */
    public void createPit2(int flags) {
        KvmPitConfig c = new KvmPitConfig();
        c.flags = flags;
        Fd.set(fd(), KVM_CREATE_PIT2, c, "KVM_CREATE_PIT2");
    }

    /** KVM_SET_TSS_ADDR: three pages of guest-physical space KVM may use (Intel real mode). */
    public void setTssAddr(long addr) {
        Fd.ioctl(fd(), KVM_SET_TSS_ADDR, addr, "KVM_SET_TSS_ADDR");
    }

    /** KVM_SET_IDENTITY_MAP_ADDR: one page for the EPT identity map (Intel, before vCPUs). */
    public void setIdentityMapAddr(long addr) {
        Memory m = new Memory(8);
        m.setLong(0, addr);
        Fd.ioctl(fd(), KVM_SET_IDENTITY_MAP_ADDR, m, "KVM_SET_IDENTITY_MAP_ADDR");
    }

    /**
     * KVM_GET_DIRTY_LOG into {@code bitmap} (one bit per page of the slot, rounded up to 64 bits).
     * Without manual protection this also clears and re-protects; with
     * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 it only reports, and {@link #clearDirtyLog} re-arms.
     */
    public void getDirtyLog(int slot, Pointer bitmap) {
        KvmDirtyLog d = new KvmDirtyLog();
        d.slot = slot;
        d.dirty_bitmap = bitmap;
        Fd.set(fd(), KVM_GET_DIRTY_LOG, d, "KVM_GET_DIRTY_LOG");
    }

    /** KVM_CLEAR_DIRTY_LOG: clears (and write-protects) the pages whose bit is set in {@code bitmap}. */
    public void clearDirtyLog(int slot, long firstPage, int numPages, Pointer bitmap) {
        KvmClearDirtyLog d = new KvmClearDirtyLog();
        d.slot = slot;
        d.first_page = firstPage;
        d.num_pages = numPages;
        d.dirty_bitmap = bitmap;
        Fd.set(fd(), KVM_CLEAR_DIRTY_LOG, d, "KVM_CLEAR_DIRTY_LOG");
    }

    /** KVM_GET_IRQCHIP for KVM_IRQCHIP_PIC_MASTER / _PIC_SLAVE / _IOAPIC. */
    public KvmIrqchip getIrqchip(int chipId) {
        return Fd.get(fd(), KVM_GET_IRQCHIP, new KvmIrqchip(chipId), "KVM_GET_IRQCHIP");
    }

    public void setIrqchip(KvmIrqchip chip) {
        Fd.set(fd(), KVM_SET_IRQCHIP, chip, "KVM_SET_IRQCHIP");
    }

    public KvmPitState2 getPit2() {
        return Fd.get(fd(), KVM_GET_PIT2, new KvmPitState2(), "KVM_GET_PIT2");
    }

    public void setPit2(KvmPitState2 state) {
        Fd.set(fd(), KVM_SET_PIT2, state, "KVM_SET_PIT2");
    }

    public KvmClockData getClock() {
        return Fd.get(fd(), KVM_GET_CLOCK, new KvmClockData(), "KVM_GET_CLOCK");
    }

    public void setClock(KvmClockData data) {
        Fd.set(fd(), KVM_SET_CLOCK, data, "KVM_SET_CLOCK");
    }

    /** KVM_CREATE_VCPU, then mmap of its kvm_run area. */
    public KvmVcpu createVcpu(int id) {
        int vcpuFd = Fd.ioctl(fd(), KVM_CREATE_VCPU, id, "KVM_CREATE_VCPU");
        Pointer run = LibC.mmap(null, vcpuMmapSize, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED, vcpuFd, 0);
        if (LibC.isMapFailed(run)) {
            int errno = Native.getLastError();
            LibC.close(vcpuFd);
            throw new NativeException("mmap(kvm_run)", errno);
        }
        return new KvmVcpu(id, vcpuFd, run, vcpuMmapSize);
    }

    /** Closes the VM fd; the kernel keeps the VM alive while vCPU fds are open. Idempotent. */
    @Override
    public void close() {
        Fd.close(fd.getAndSet(-1), "kvm-vm");
    }
}
