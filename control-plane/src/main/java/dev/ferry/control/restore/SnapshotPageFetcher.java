package dev.ferry.control.restore;

import dev.ferry.dataplane.postcopy.FetchedPage;
import dev.ferry.dataplane.postcopy.PageFetcher;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.PageHashes;
import io.grpc.Status;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.CompletableFuture;

/**
 * Serves missing pages from a snapshot's memory file (guest RAM in guest-physical order), so an
 * on-demand restore faults its pages in through the same userfaultfd path postcopy uses.
 */
final class SnapshotPageFetcher implements PageFetcher {
    private final FileChannel file;

    SnapshotPageFetcher(Path memoryFile) throws IOException {
        this.file = FileChannel.open(memoryFile, StandardOpenOption.READ);
    }

    @Override
    public CompletableFuture<FetchedPage> fetch(long gpa, int pages) {
        ByteBuffer b = ByteBuffer.allocateDirect(pages * (int) GuestMemory.PAGE_SIZE);
        try {
            while (b.hasRemaining()) {
                if (file.read(b, gpa + b.position()) < 0) {
                    throw new IOException("snapshot memory ends before 0x" + Long.toHexString(gpa));
                }
            }
        } catch (IOException e) {
            return CompletableFuture.failedFuture(Status.DATA_LOSS.withDescription(e.getMessage()).asRuntimeException());
        }
        b.flip();
        boolean zero = true;
        for (int off = 0; off < b.limit() && zero; off += (int) GuestMemory.PAGE_SIZE) {
            zero = PageHashes.isZero(b.slice(off, (int) GuestMemory.PAGE_SIZE));
        }
        return CompletableFuture.completedFuture(new FetchedPage(gpa, pages, zero, zero ? null : b));
    }

    @Override
    public void close() {
        try {
            file.close();
        } catch (IOException e) {
            // nothing left to read from it
        }
    }
}
