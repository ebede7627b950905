package dev.ferry.dataplane;

import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Reusable heap chunks for batches that arrive without transport ByteBuffers (in-process transport, or a data
 * field that is not last in the message). Lock-free because every stream's receive thread takes and returns chunks.
 */
final class ChunkPool {
    static final int CHUNK_BYTES = PageWire.MAX_DATA_PAGES_PER_BATCH * PageWire.PAGE_SIZE;

    private final ConcurrentLinkedQueue<byte[]> free = new ConcurrentLinkedQueue<>();
    private final AtomicInteger pooled = new AtomicInteger();
    private final int maxPooled;

    ChunkPool(int maxPooled) {
        this.maxPooled = maxPooled;
    }

    /** A chunk of at least {@code bytes} bytes; chunks larger than 1 MiB are not pooled. */
    byte[] acquire(int bytes) {
        if (bytes > CHUNK_BYTES) {
            return new byte[bytes];
        }
        byte[] c = free.poll();
        if (c != null) {
            pooled.decrementAndGet();
            return c;
        }
        return new byte[CHUNK_BYTES];
    }

    void release(byte[] chunk) {
        if (chunk.length == CHUNK_BYTES && pooled.incrementAndGet() <= maxPooled) {
            free.offer(chunk);
        } else if (chunk.length == CHUNK_BYTES) {
            pooled.decrementAndGet();
        }
    }
}
