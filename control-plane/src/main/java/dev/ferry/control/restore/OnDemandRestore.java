package dev.ferry.control.restore;

import dev.ferry.dataplane.postcopy.PostcopyPager;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.PageHashes;
import dev.ferry.vm.GuestBackend;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.Snapshot;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;

/**
 * Restores a snapshot and runs it at once: guest memory starts empty and each page is read from the
 * snapshot file the first time the guest touches it (userfaultfd, the postcopy path). The time to
 * the first guest instruction does not depend on memory size.
 */
public final class OnDemandRestore implements AutoCloseable {
    private final GuestVm vm;
    private final PostcopyPager pager;
    private final long restoreNanos;

    private OnDemandRestore(GuestVm vm, PostcopyPager pager, long restoreNanos) {
        this.vm = vm;
        this.pager = pager;
        this.restoreNanos = restoreNanos;
    }

    /**
     * Builds the VM on {@code backend} (the one that saved the snapshot), arms userfaultfd over all of its memory,
     * restores device state and starts the vCPUs.
     */
    public static OnDemandRestore start(Path dir, GuestBackend backend, Consumer<String> console)
            throws IOException, StateException {
        long t0 = System.nanoTime();
        SectionSet state = Snapshot.readState(dir);
        Path memoryFile = dir.resolve(Snapshot.MEMORY_FILE);
        GuestVm vm = backend.createForRestore(state, console);
        PostcopyPager pager = null;
        try {
            if (Files.size(memoryFile) != vm.memory().totalBytes()) {
                throw new StateException("snapshot memory is " + Files.size(memoryFile) + " bytes, the VM has "
                        + vm.memory().totalBytes());
            }
            pager = new PostcopyPager(vm.memory(), vm.trapMissingPages(), new PageHashes(vm.memory()),
                    DirtyBitmap.empty(vm.memory()), new SnapshotPageFetcher(memoryFile));
            vm.restoreState(state); // touches no guest memory
            pager.start();
            vm.start();
            return new OnDemandRestore(vm, pager, System.nanoTime() - t0);
        } catch (IOException | StateException | RuntimeException e) {
            if (pager != null) {
                pager.close();
            }
            vm.close();
            throw e;
        }
    }

    public GuestVm vm() {
        return vm;
    }

    public PostcopyPager pager() {
        return pager;
    }

    /** From reading the state file to the vCPUs running. */
    public long restoreNanos() {
        return restoreNanos;
    }

    @Override
    public void close() {
        try {
            vm.pause();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        pager.close();
        vm.close();
    }
}
