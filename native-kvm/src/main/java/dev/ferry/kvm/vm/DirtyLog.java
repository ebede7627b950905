package dev.ferry.kvm.vm;

import com.sun.jna.Memory;
import dev.ferry.memory.DirtyTracker;
import dev.ferry.kvm.sys.KvmIoctls;
import dev.ferry.kvm.sys.KvmVm;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;

/**
 * KVM dirty-page logging for all slots of one VM, in manual-protect mode
 * (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): reading the log does not re-protect pages, clearing does, and
 * only for the pages that were dirty, which keeps each round cheap for large guests.
 */
public final class DirtyLog implements DirtyTracker {
    private final KvmVm vm;
    private final GuestMemory memory;
    private final Memory[] kernelBitmaps;
    private boolean enabled;

    public DirtyLog(KvmVm vm, GuestMemory memory) {
        this.vm = vm;
        this.memory = memory;
        this.kernelBitmaps = new Memory[memory.regions().size()];
        for (int i = 0; i < kernelBitmaps.length; i++) {
            long words = (memory.regions().get(i).pages() + 63) / 64;
            kernelBitmaps[i] = new Memory(words * 8);
        }
    }

    /**
     * Turns logging on for every slot. From here on, every page the guest writes is reported by the
     * next {@link #fetchAndClear()}.
     */
    public synchronized void enable() {
        if (enabled) {
            return;
        }
        vm.enableCap(KvmIoctls.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KvmIoctls.KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
        for (MemoryRegion r : memory.regions()) {
            vm.setUserMemoryRegion(r.slot(), KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES, r.guestPhysAddr(), r.size(),
                    r.mapping().address());
        }
        enabled = true;
    }

    /** Turns logging off (the guest then runs without write-protection faults). */
    public synchronized void disable() {
        if (!enabled) {
            return;
        }
        for (MemoryRegion r : memory.regions()) {
            vm.setUserMemoryRegion(r.slot(), 0, r.guestPhysAddr(), r.size(), r.mapping().address());
        }
        enabled = false;
    }

    public synchronized boolean enabled() {
        return enabled;
    }

    /**
     * Pages written since the previous call (or since {@link #enable()}), and re-protects exactly
     * those pages so the next call reports new writes only.
     */
    public synchronized DirtyBitmap fetchAndClear() {
        return read(true);
    }

    /**
     * Pages written since the last {@link #fetchAndClear()} (or since {@link #enable()}), leaving the
     * log as it is: each call reports a superset of the one before.
     */
    public synchronized DirtyBitmap fetch() {
        return read(false);
    }

    private DirtyBitmap read(boolean clear) {
        if (!enabled) {
            throw new IllegalStateException("dirty logging is not enabled");
        }
        long[][] bits = new long[kernelBitmaps.length][];
        for (int i = 0; i < kernelBitmaps.length; i++) {
            MemoryRegion r = memory.regions().get(i);
            Memory bm = kernelBitmaps[i];
            vm.getDirtyLog(r.slot(), bm);
            if (clear) {
                vm.clearDirtyLog(r.slot(), 0, (int) r.pages(), bm);
            }
            bits[i] = new long[(int) (bm.size() / 8)];
            bm.read(0, bits[i], 0, bits[i].length);
        }
        return DirtyBitmap.of(memory, bits);
    }
}
