package dev.ferry.dataplane;

import static dev.ferry.dataplane.ProtoStreams.readByte;
import static dev.ferry.dataplane.ProtoStreams.readFully;
import static dev.ferry.dataplane.ProtoStreams.readLength;
import static dev.ferry.dataplane.ProtoStreams.readVarint;
import static dev.ferry.dataplane.ProtoStreams.skipField;
import static dev.ferry.dataplane.ProtoStreams.skipFully;

import com.google.protobuf.CodedInputStream;
import io.grpc.Detachable;
import io.grpc.HasByteBuffer;
import io.grpc.KnownLength;
import io.grpc.MethodDescriptor;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.concurrent.atomic.LongAdder;
import net.jpountz.lz4.LZ4Exception;

/**
 * A PageBatch on the destination side: the parsed header, and the page data still in the transport's buffers.
 *
 * <p>{@link Marshaller#parse} reads the header fields and stops at the {@code data} field: when the stream is
 * gRPC's {@link HasByteBuffer} + {@link Detachable} stream (Netty) it detaches it, so the batch owns the transport's
 * (direct) buffers, and {@link #copyData} later copies the pages from those buffers straight into guest memory.
 * Otherwise (in-process transport, or a {@code data} field that is not the last field) the data is read into a
 * pooled heap chunk. Parsing never throws: a malformed message becomes a batch with {@link #error()}, so the stream
 * fails with INVALID_ARGUMENT rather than an opaque transport error.
 *
 * <p>Must be closed (releases the transport buffers or the chunk). Not thread-safe: parsed and applied on the
 * call's serialized executor.
 */
final class IncomingBatch implements AutoCloseable {
    int streamIndex;
    int round;
    boolean endOfRound;
    boolean postcopy;
    long[] runGpa = new long[4];
    long[] runPages = new long[4];
    int runCount;
    long[] zeroGpa = new long[4];
    long[] zeroPages = new long[4];
    int zeroCount;
    /** Length of the data field; after {@link #decompress}, of the page bytes. */
    int dataLength;
    /** PageBatch.DataCodec as received (unchecked). */
    int codec;

    private final ChunkPool pool;
    private String error;
    private InputStream owned;   // detached transport stream, released on close
    private InputStream direct;  // == owned when the data is read from its ByteBuffers
    private byte[] heap;
    private boolean heapPooled; // heap came from the pool and goes back to it
    private int heapPos;

    private IncomingBatch(ChunkPool pool) {
        this.pool = pool;
    }

    /** Why the message could not be parsed, or null. */
    String error() {
        return error;
    }

    boolean isDirect() {
        return direct != null;
    }

    /**
     * Replaces an LZ4 data field by the {@code rawLength} page bytes it decompresses to (then in a heap chunk).
     * Returns why it cannot, or null. The block is untrusted: the safe decompressor never writes past
     * {@code rawLength}, and a block that makes fewer bytes is refused too.
     */
    String decompress(int rawLength) throws IOException {
        byte[] block;
        boolean blockPooled = heapPooled;
        if (direct != null) {
            block = new byte[dataLength];
            readFully(direct, block, 0, dataLength);
            direct = null; // owned stays, released on close
        } else {
            block = heap;
            heap = null;
        }
        // Not from the pool: the pool only keeps what the rare heap path needs, and compressed batches would keep
        // it full for good (16 MiB an agent holds on to after one compressed migration).
        byte[] out = new byte[rawLength];
        try {
            int n = block == null ? -1 : Lz4.DECOMPRESSOR.decompress(block, 0, dataLength, out, 0, rawLength);
            if (n != rawLength) {
                return "LZ4 data decompresses to " + Math.max(n, 0) + " bytes, but page_runs cover " + rawLength;
            }
        } catch (LZ4Exception e) {
            return "LZ4 data does not decompress to the " + rawLength + " bytes page_runs cover: " + e.getMessage();
        } finally {
            if (block != null && blockPooled) {
                pool.release(block);
            }
        }
        heapPooled = false;
        heap = out;
        heapPos = 0;
        dataLength = rawLength;
        return null;
    }

    /**
     * Copies the data, run by run in message order, into {@code sink}: each run is split at memory-region boundaries
     * ({@code layout}), and within a run, at the transport's buffer boundaries: whole pages inside one transport
     * buffer are passed as a slice of it (direct → direct, no copy in between); a page split across two buffers is
     * assembled in {@code scratch} (a direct 4 KiB buffer) first. The runs must have been validated.
     */
    void copyData(IncomingPages sink, MemoryLayout layout, ByteBuffer scratch) throws IOException {
        for (int i = 0; i < runCount; i++) {
            long gpa = runGpa[i];
            long left = runPages[i];
            while (left > 0) {
                int n = (int) layout.pagesInRegion(gpa, Math.min(left, 1 << 18));
                if (direct != null) {
                    copyDirect(sink, gpa, n, scratch);
                } else {
                    int len = n * PageWire.PAGE_SIZE;
                    sink.writePages(gpa, n, ByteBuffer.wrap(heap, heapPos, len));
                    heapPos += len;
                }
                gpa += (long) n * PageWire.PAGE_SIZE;
                left -= n;
            }
        }
    }

    private void copyDirect(IncomingPages sink, long gpa, int pages, ByteBuffer scratch) throws IOException {
        HasByteBuffer hb = (HasByteBuffer) direct;
        while (pages > 0) {
            ByteBuffer bb = hb.getByteBuffer();
            if (bb == null) {
                throw new EOFException("page data ends early");
            }
            int avail = bb.remaining();
            if (avail == 0) {
                int x = direct.read();
                if (x < 0) {
                    throw new EOFException("page data ends early");
                }
                scratch.put((byte) x);
            } else if (scratch.position() > 0 || avail < PageWire.PAGE_SIZE) {
                int n = Math.min(scratch.remaining(), avail);
                bb.limit(bb.position() + n);
                scratch.put(bb);
                skipFully(direct, n);
            } else {
                int n = Math.min(avail / PageWire.PAGE_SIZE, pages);
                bb.limit(bb.position() + n * PageWire.PAGE_SIZE);
                sink.writePages(gpa, n, bb);
                skipFully(direct, n * PageWire.PAGE_SIZE);
                gpa += (long) n * PageWire.PAGE_SIZE;
                pages -= n;
            }
            if (!scratch.hasRemaining()) {
                scratch.flip();
                sink.writePages(gpa, 1, scratch);
                scratch.clear();
                gpa += PageWire.PAGE_SIZE;
                pages--;
            }
        }
    }

    @Override
    public void close() {
        if (owned != null) {
            try {
                owned.close();
            } catch (IOException ignored) {
                // Releasing transport buffers does not fail in practice; nothing to do if it does.
            }
            owned = null;
            direct = null;
        }
        if (heap != null) {
            if (heapPooled) {
                pool.release(heap);
            }
            heap = null;
        }
    }

    private void addRun(long gpa, long pages) {
        if (runCount == runGpa.length) {
            runGpa = Arrays.copyOf(runGpa, runCount * 2);
            runPages = Arrays.copyOf(runPages, runCount * 2);
        }
        runGpa[runCount] = gpa;
        runPages[runCount++] = pages;
    }

    private void addZero(long gpa, long pages) {
        if (zeroCount == zeroGpa.length) {
            zeroGpa = Arrays.copyOf(zeroGpa, zeroCount * 2);
            zeroPages = Arrays.copyOf(zeroPages, zeroCount * 2);
        }
        zeroGpa[zeroCount] = gpa;
        zeroPages[zeroCount++] = pages;
    }

    /** Counts of how batches were received, for tests and metrics. */
    static final class ReceiveStats {
        final LongAdder directBatches = new LongAdder();
        final LongAdder heapBatches = new LongAdder();
    }

    /** Request marshaller of the destination's StreamPages method. */
    static final class Marshaller implements MethodDescriptor.Marshaller<IncomingBatch> {
        private final ChunkPool pool;
        private final ReceiveStats stats;

        Marshaller(ChunkPool pool, ReceiveStats stats) {
            this.pool = pool;
            this.stats = stats;
        }

        @Override
        public InputStream stream(IncomingBatch value) {
            throw new UnsupportedOperationException("the destination does not send PageBatch messages");
        }

        @Override
        public IncomingBatch parse(InputStream in) {
            IncomingBatch b = new IncomingBatch(pool);
            try {
                InputStream src = in;
                if (in instanceof Detachable d && in instanceof HasByteBuffer h && h.byteBufferSupported()) {
                    src = d.detach();
                    b.owned = src;
                }
                parseInto(src, b);
                if (b.dataLength > 0) {
                    (b.direct != null ? stats.directBatches : stats.heapBatches).increment();
                }
            } catch (IOException | RuntimeException e) {
                b.close();
                b.error = "malformed PageBatch: " + e.getMessage();
            }
            return b;
        }

        private void parseInto(InputStream src, IncomingBatch b) throws IOException {
            byte[] small = new byte[32];
            while (true) {
                int first = src.read();
                if (first < 0) {
                    return;
                }
                long tag = readVarint(src, first);
                int field = (int) (tag >>> 3);
                int wireType = (int) (tag & 7);
                if (field <= 0 || tag >>> 32 != 0) {
                    throw new IOException("invalid tag " + tag);
                }
                switch (field) {
                    case PageWire.STREAM_INDEX, PageWire.ROUND, PageWire.END_OF_ROUND, PageWire.POSTCOPY,
                            PageWire.DATA_CODEC -> {
                        if (wireType != PageWire.WIRETYPE_VARINT) {
                            skipField(src, wireType);
                            continue;
                        }
                        long v = readVarint(src, readByte(src));
                        switch (field) {
                            case PageWire.STREAM_INDEX -> b.streamIndex = (int) v;
                            case PageWire.ROUND -> b.round = (int) v;
                            case PageWire.END_OF_ROUND -> b.endOfRound = v != 0;
                            case PageWire.DATA_CODEC -> b.codec = (int) Math.min(v, Integer.MAX_VALUE);
                            default -> b.postcopy = v != 0;
                        }
                    }
                    case PageWire.PAGE_RUNS, PageWire.ZERO_RANGES -> {
                        if (wireType != PageWire.WIRETYPE_LENGTH_DELIMITED) {
                            skipField(src, wireType);
                            continue;
                        }
                        int len = readLength(src);
                        byte[] buf = len <= small.length ? small : new byte[len];
                        readFully(src, buf, 0, len);
                        parseRange(b, field, CodedInputStream.newInstance(buf, 0, len));
                    }
                    case PageWire.DATA -> {
                        if (wireType != PageWire.WIRETYPE_LENGTH_DELIMITED) {
                            skipField(src, wireType);
                            continue;
                        }
                        int len = readLength(src);
                        if (b.heap != null) { // a repeated data field: the last one wins (parse: always pooled)
                            pool.release(b.heap);
                            b.heap = null;
                        }
                        b.dataLength = len;
                        boolean last = src instanceof KnownLength && src.available() == len;
                        if (len > 0 && last && src == b.owned) {
                            b.direct = src; // data stays in the transport's buffers until copyData
                            return;
                        }
                        if (len > 0) {
                            b.heap = pool.acquire(len);
                            b.heapPooled = true;
                            b.heapPos = 0;
                            readFully(src, b.heap, 0, len);
                        }
                    }
                    default -> skipField(src, wireType);
                }
            }
        }

        private static void parseRange(IncomingBatch b, int field, CodedInputStream c) throws IOException {
            long gpa = 0;
            long pages = 0;
            while (true) {
                int tag = c.readTag();
                if (tag == 0) {
                    break;
                }
                if (tag == (PageWire.RANGE_GPA << 3 | PageWire.WIRETYPE_VARINT)) {
                    gpa = c.readUInt64();
                } else if (tag == (PageWire.RANGE_PAGE_COUNT << 3 | PageWire.WIRETYPE_VARINT)) {
                    pages = Integer.toUnsignedLong(c.readUInt32());
                } else if (!c.skipField(tag)) {
                    throw new IOException("unexpected end-group tag in PageRange");
                }
            }
            if (field == PageWire.PAGE_RUNS) {
                b.addRun(gpa, pages);
            } else {
                b.addZero(gpa, pages);
            }
        }
    }
}
