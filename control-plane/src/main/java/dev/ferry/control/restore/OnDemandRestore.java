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

    /**
     * Reads, in the background, every page the guest has not touched yet, then retires the pager: from then on the
     * VM runs like any other and the snapshot is no longer read. {@code whenLoaded} runs on the loader thread once
     * every page is in place; {@code whenFailed} if the snapshot could not be read. Closing the returned handle
     * stops the loader and retires the pager at once (call it before closing the VM; the VM is not closed).
     */
    public AutoCloseable loadRestInBackground(Path dir, Runnable whenLoaded, java.util.function.Consumer<Exception> whenFailed) {
        Path memoryFile = dir.resolve(Snapshot.MEMORY_FILE);
        Thread loader = new Thread(() -> {
            try (java.nio.channels.FileChannel file = java.nio.channels.FileChannel.open(memoryFile,
                    java.nio.file.StandardOpenOption.READ)) {
                java.nio.ByteBuffer chunk = java.nio.ByteBuffer.allocateDirect(LOAD_CHUNK);
                for (dev.ferry.memory.MemoryRegion r : vm.memory().regions()) {
                    for (long off = 0; off < r.size() && !Thread.currentThread().isInterrupted(); off += LOAD_CHUNK) {
                        long gpa = r.guestPhysAddr() + off;
                        int len = (int) Math.min(LOAD_CHUNK, r.size() - off);
                        chunk.clear().limit(len);
                        while (chunk.hasRemaining()) {
                            if (file.read(chunk, gpa + chunk.position()) < 0) {
                                throw new IOException("snapshot memory ends before 0x" + Long.toHexString(gpa));
                            }
                        }
                        chunk.flip();
                        pager.writePages(gpa, len / (int) dev.ferry.memory.GuestMemory.PAGE_SIZE, chunk);
                    }
                }
                if (!Thread.currentThread().isInterrupted() && pager.awaitAllPresent(java.time.Duration.ofMinutes(1))) {
                    pager.close();
                    whenLoaded.run();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (IOException | RuntimeException e) {
                if (!Thread.currentThread().isInterrupted()) {
                    whenFailed.accept(e);
                }
            }
        }, "ferry-snapshot-loader");
        loader.setDaemon(true);
        loader.start();
        return () -> {
            loader.interrupt();
            pager.close(); // background writes in progress fail, the loader ends
            loader.join();
        };
    }

    private static final int LOAD_CHUNK = 2 << 20;

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
