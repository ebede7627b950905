package dev.ferry.dataplane;

import com.google.protobuf.CodedOutputStream;
import net.jpountz.lz4.LZ4Compressor;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.PageHashes;
import io.grpc.MethodDescriptor;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * A PageBatch on the source side, before serialization: the header fields plus references to the guest pages whose
 * bytes make up {@code data}. Nothing is copied until gRPC serializes it ({@link #MARSHALLER}): then the header is
 * written, and the pages are copied from guest memory straight to gRPC's output, hashed on the way.
 *
 * <p>The encoding is exactly the generated PageBatch encoding (fields in number order, proto3 defaults omitted),
 * with {@code data} (field 15) last.
 *
 * <p>{@link #compressed} instead reads the pages at once and makes {@code data} an LZ4 block (data_codec LZ4):
 * its length must be in the header, so that batch is not zero-copy.
 *
 * <p>Immutable once built; each {@link BatchStream} has its own read position.
 */
final class OutgoingBatch {
    /** Request marshaller of the source's StreamPages calls. */
    static final MethodDescriptor.Marshaller<OutgoingBatch> MARSHALLER = new MethodDescriptor.Marshaller<>() {
        @Override
        public InputStream stream(OutgoingBatch value) {
            return value.new BatchStream();
        }

        @Override
        public OutgoingBatch parse(InputStream stream) {
            throw new UnsupportedOperationException("the source does not receive PageBatch messages");
        }
    };

    /** Pages copied from guest memory per step of {@link BatchStream#drainTo}: 64 KiB stays in L2 between copy, hash and write. */
    static final int STAGE_PAGES = 16;

    private final MemoryLayout layout;
    private final PageHashes hashes;
    private final MemoryFence fence;
    final int streamIndex;
    final int round;
    final boolean endOfRound;
    private final long[] runGpa;
    private final int[] runPages;
    private final long[] zeroGpa;
    private final int[] zeroPages;
    final int dataPages;
    final long zeroPageCount;
    /** The data field when it was encoded up front ({@link #compressed}); null: copied from guest memory while sent. */
    private final byte[] body;
    /** PageBatch.DataCodec of {@link #body}. */
    final int codec;
    private final byte[] header;

    private OutgoingBatch(Builder b, boolean endOfRound) {
        this.layout = b.layout;
        this.hashes = b.hashes;
        this.fence = b.fence;
        this.streamIndex = b.streamIndex;
        this.round = b.round;
        this.endOfRound = endOfRound;
        this.runGpa = Arrays.copyOf(b.runGpa, b.runCount);
        this.runPages = Arrays.copyOf(b.runPages, b.runCount);
        this.zeroGpa = Arrays.copyOf(b.zeroGpa, b.zeroCount);
        this.zeroPages = Arrays.copyOf(b.zeroPages, b.zeroCount);
        this.dataPages = b.dataPages;
        this.zeroPageCount = b.zeroPageCount;
        this.body = null;
        this.codec = PageWire.CODEC_RAW;
        this.header = encodeHeader();
    }

    private OutgoingBatch(OutgoingBatch raw, byte[] body, int codec) {
        this.layout = raw.layout;
        this.hashes = raw.hashes;
        this.fence = raw.fence;
        this.streamIndex = raw.streamIndex;
        this.round = raw.round;
        this.endOfRound = raw.endOfRound;
        this.runGpa = raw.runGpa;
        this.runPages = raw.runPages;
        this.zeroGpa = raw.zeroGpa;
        this.zeroPages = raw.zeroPages;
        this.dataPages = raw.dataPages;
        this.zeroPageCount = raw.zeroPageCount;
        this.body = body;
        this.codec = codec;
        this.header = encodeHeader();
    }

    /** Page bytes this batch carries: 4096 per data page. */
    int dataBytes() {
        return dataPages * PageWire.PAGE_SIZE;
    }

    /** Length of the data field on the wire: {@link #dataBytes()}, or the LZ4 block's. */
    int dataFieldBytes() {
        return body != null ? body.length : dataBytes();
    }

    /** The serialized size of the whole PageBatch message. */
    int serializedSize() {
        return header.length + dataFieldBytes();
    }

    /**
     * This batch with its pages read from guest memory now (their hashes recorded, as when sent raw) and compressed
     * with {@code lz4}: data_codec LZ4, or raw bytes when the block would not be smaller. The caller sends the
     * result instead of this batch.
     */
    OutgoingBatch compressed(LZ4Compressor lz4) throws IOException {
        int n = dataBytes();
        if (n == 0) {
            return this;
        }
        Stage stage = STAGE.get();
        byte[] raw = stage.batch(n);
        int pos = 0;
        for (int i = 0; i < runGpa.length; i++) {
            int len = runPages[i] * PageWire.PAGE_SIZE;
            stageFromMemory(runGpa[i], raw, stage.batchView, pos, len);
            pos += len;
        }
        byte[] block = stage.block(lz4.maxCompressedLength(n));
        int len = lz4.compress(raw, 0, n, block, 0, block.length);
        return len < n ? new OutgoingBatch(this, Arrays.copyOf(block, len), PageWire.CODEC_LZ4)
                : new OutgoingBatch(this, Arrays.copyOf(raw, n), PageWire.CODEC_RAW);
    }

    int runCount() {
        return runGpa.length;
    }

    int zeroRangeCount() {
        return zeroGpa.length;
    }

    private byte[] encodeHeader() {
        int size = 0;
        if (streamIndex != 0) {
            size += CodedOutputStream.computeUInt32Size(PageWire.STREAM_INDEX, streamIndex);
        }
        if (round != 0) {
            size += CodedOutputStream.computeUInt32Size(PageWire.ROUND, round);
        }
        for (int i = 0; i < runGpa.length; i++) {
            size += rangeFieldSize(PageWire.PAGE_RUNS, runGpa[i], runPages[i]);
        }
        for (int i = 0; i < zeroGpa.length; i++) {
            size += rangeFieldSize(PageWire.ZERO_RANGES, zeroGpa[i], zeroPages[i]);
        }
        if (endOfRound) {
            size += CodedOutputStream.computeBoolSize(PageWire.END_OF_ROUND, true);
        }
        if (codec != PageWire.CODEC_RAW) {
            size += CodedOutputStream.computeEnumSize(PageWire.DATA_CODEC, codec);
        }
        int data = dataFieldBytes();
        if (data > 0) {
            size += CodedOutputStream.computeTagSize(PageWire.DATA) + CodedOutputStream.computeUInt32SizeNoTag(data);
        }
        byte[] out = new byte[size];
        CodedOutputStream c = CodedOutputStream.newInstance(out);
        try {
            if (streamIndex != 0) {
                c.writeUInt32(PageWire.STREAM_INDEX, streamIndex);
            }
            if (round != 0) {
                c.writeUInt32(PageWire.ROUND, round);
            }
            for (int i = 0; i < runGpa.length; i++) {
                writeRange(c, PageWire.PAGE_RUNS, runGpa[i], runPages[i]);
            }
            for (int i = 0; i < zeroGpa.length; i++) {
                writeRange(c, PageWire.ZERO_RANGES, zeroGpa[i], zeroPages[i]);
            }
            if (endOfRound) {
                c.writeBool(PageWire.END_OF_ROUND, true);
            }
            if (codec != PageWire.CODEC_RAW) {
                c.writeEnum(PageWire.DATA_CODEC, codec);
            }
            if (data > 0) {
                c.writeTag(PageWire.DATA, PageWire.WIRETYPE_LENGTH_DELIMITED);
                c.writeUInt32NoTag(data);
            }
            c.checkNoSpaceLeft();
        } catch (IOException e) {
            throw new UncheckedIOException(e); // cannot happen: the array is sized exactly
        }
        return out;
    }

    private static int rangeSize(long gpa, int pages) {
        return (gpa != 0 ? CodedOutputStream.computeUInt64Size(PageWire.RANGE_GPA, gpa) : 0)
                + (pages != 0 ? CodedOutputStream.computeUInt32Size(PageWire.RANGE_PAGE_COUNT, pages) : 0);
    }

    private static int rangeFieldSize(int field, long gpa, int pages) {
        int m = rangeSize(gpa, pages);
        return CodedOutputStream.computeTagSize(field) + CodedOutputStream.computeUInt32SizeNoTag(m) + m;
    }

    private static void writeRange(CodedOutputStream c, int field, long gpa, int pages) throws IOException {
        c.writeTag(field, PageWire.WIRETYPE_LENGTH_DELIMITED);
        c.writeUInt32NoTag(rangeSize(gpa, pages));
        if (gpa != 0) {
            c.writeUInt64(PageWire.RANGE_GPA, gpa);
        }
        if (pages != 0) {
            c.writeUInt32(PageWire.RANGE_PAGE_COUNT, pages);
        }
    }

    /** Per-thread staging area of {@link BatchStream#drainTo}: the only place page bytes pass through the heap. */
    private static final class Stage {
        final byte[] bytes = new byte[STAGE_PAGES * PageWire.PAGE_SIZE];
        final ByteBuffer view = ByteBuffer.wrap(bytes);
        /** Pages on their way to {@link #bytes} (or a batch), hashed here: see stageFromMemory. */
        final ByteBuffer scratch = ByteBuffer.allocateDirect(STAGE_PAGES * PageWire.PAGE_SIZE);
        private byte[] batch = new byte[0];
        private ByteBuffer batchView;
        private byte[] block = new byte[0];

        /** Room for a whole batch's pages, for {@link #compressed}; grown on first use only. */
        byte[] batch(int n) {
            if (batch.length < n) {
                batch = new byte[Math.max(n, PageWire.MAX_DATA_PAGES_PER_BATCH * PageWire.PAGE_SIZE)];
                batchView = ByteBuffer.wrap(batch);
            }
            return batch;
        }

        byte[] block(int n) {
            if (block.length < n) {
                block = new byte[n];
            }
            return block;
        }
    }

    private static final ThreadLocal<Stage> STAGE = ThreadLocal.withInitial(Stage::new);

    /**
     * The serialized batch. gRPC's Netty transport calls {@link #drainTo} (with {@link #available} as the length);
     * the in-process transport hands this stream to the receiver, which reads it. Either way each page is copied out
     * of guest memory exactly once, hashed from the copy, and that hash is recorded in {@link PageHashes}, so the
     * recorded hash is the hash of exactly the bytes that went on the wire even if the guest writes the page
     * concurrently.
     */
    final class BatchStream extends HeaderedStream {
        private int run;           // current data run
        private int runOffset;     // bytes of the current run already staged
        private byte[] page;       // read path: one staged page
        private ByteBuffer pageView;
        private int pagePos = PageWire.PAGE_SIZE;

        BatchStream() {
            super(header, serializedSize() - header.length);
        }

        private int bodyPos; // read position in an encoded body

        @Override
        protected int drainBody(OutputStream target) throws IOException {
            if (body != null) {
                int n = body.length - bodyPos;
                target.write(body, bodyPos, n);
                bodyPos = body.length;
                return n;
            }
            int written = 0;
            if (page != null && pagePos < PageWire.PAGE_SIZE) {
                target.write(page, pagePos, PageWire.PAGE_SIZE - pagePos);
                written += PageWire.PAGE_SIZE - pagePos;
                pagePos = PageWire.PAGE_SIZE;
            }
            Stage stage = STAGE.get();
            while (run < runGpa.length) {
                int runBytes = runPages[run] * PageWire.PAGE_SIZE;
                while (runOffset < runBytes) {
                    int n = Math.min(stage.bytes.length, runBytes - runOffset);
                    stageFromMemory(runGpa[run] + runOffset, stage.bytes, stage.view, 0, n);
                    target.write(stage.bytes, 0, n);
                    runOffset += n;
                    written += n;
                }
                run++;
                runOffset = 0;
            }
            return written;
        }

        @Override
        protected int readBody(byte[] b, int off, int len) throws IOException {
            if (body != null) {
                int n = Math.min(len, body.length - bodyPos);
                System.arraycopy(body, bodyPos, b, off, n);
                bodyPos += n;
                return n;
            }
            if (pagePos == PageWire.PAGE_SIZE) {
                stageNextPage();
            }
            int n = Math.min(len, PageWire.PAGE_SIZE - pagePos);
            System.arraycopy(page, pagePos, b, off, n);
            pagePos += n;
            return n;
        }

        private void stageNextPage() throws IOException {
            if (page == null) {
                page = new byte[PageWire.PAGE_SIZE];
                pageView = ByteBuffer.wrap(page);
            }
            while (runOffset == runPages[run] * PageWire.PAGE_SIZE) {
                run++;
                runOffset = 0;
            }
            stageFromMemory(runGpa[run] + runOffset, page, pageView, 0, PageWire.PAGE_SIZE);
            runOffset += PageWire.PAGE_SIZE;
            pagePos = 0;
        }

    }

    /**
     * Copies {@code n} bytes (whole pages, one region) at {@code gpa} into {@code dst} at {@code off} ({@code dstView}
     * wraps {@code dst}) and records each page's hash, computed from the copy (the guest may write memory meanwhile).
     * Where hashing in native code is available the pages pass through a direct scratch buffer and are hashed there,
     * several times faster than on the heap.
     */
    private void stageFromMemory(long gpa, byte[] dst, ByteBuffer dstView, int off, int n) throws IOException {
        ByteBuffer scratch = PageHashes.NATIVE ? STAGE.get().scratch : null;
        int step = scratch != null ? scratch.capacity() : n;
        for (int o = 0; o < n; o += step) {
            int len = Math.min(step, n - o);
            ByteBuffer copy = scratch != null ? scratch : dstView;
            int at = scratch != null ? 0 : off + o;
            if (!fence.enter()) {
                throw new IOException("page sender closed: guest memory may no longer be read");
            }
            try {
                MemoryRegion r = layout.regionAt(gpa + o);
                copy.clear().put(at, r.view(), (int) (gpa + o - r.guestPhysAddr()), len);
            } finally {
                fence.exit();
            }
            for (int p = 0; p < len; p += PageWire.PAGE_SIZE) {
                copy.clear().position(at + p).limit(at + p + PageWire.PAGE_SIZE);
                hashes.set(gpa + o + p, PageHashes.hashPage(copy, gpa + o + p));
            }
            if (scratch != null) {
                scratch.clear().get(0, dst, off + o, len);
            }
        }
    }

    /**
     * Accumulates the pages of one batch in ascending order per call site, merging adjacent pages of one region
     * into runs. Not thread-safe (one per stream worker).
     */
    static final class Builder {
        private final MemoryLayout layout;
        private final PageHashes hashes;
        private final MemoryFence fence;
        private final int streamIndex;
        private final int round;
        private long[] runGpa = new long[16];
        private int[] runPages = new int[16];
        private int runCount;
        private long[] zeroGpa = new long[16];
        private int[] zeroPages = new int[16];
        private int zeroCount;
        private int dataPages;
        private long zeroPageCount;

        Builder(MemoryLayout layout, PageHashes hashes, MemoryFence fence, int streamIndex, int round) {
            this.layout = layout;
            this.hashes = hashes;
            this.fence = fence;
            this.streamIndex = streamIndex;
            this.round = round;
        }

        int dataPages() {
            return dataPages;
        }

        long totalPages() {
            return dataPages + zeroPageCount;
        }

        int rangeCount() {
            return runCount + zeroCount;
        }

        boolean isEmpty() {
            return runCount == 0 && zeroCount == 0;
        }

        void addDataPage(long gpa) {
            if (runCount > 0 && runGpa[runCount - 1] + (long) runPages[runCount - 1] * PageWire.PAGE_SIZE == gpa
                    && layout.sameRegion(runGpa[runCount - 1], gpa)) {
                runPages[runCount - 1]++;
            } else {
                if (runCount == runGpa.length) {
                    runGpa = Arrays.copyOf(runGpa, runCount * 2);
                    runPages = Arrays.copyOf(runPages, runCount * 2);
                }
                runGpa[runCount] = gpa;
                runPages[runCount] = 1;
                runCount++;
            }
            dataPages++;
        }

        void addZeroPage(long gpa) {
            if (zeroCount > 0 && zeroGpa[zeroCount - 1] + (long) zeroPages[zeroCount - 1] * PageWire.PAGE_SIZE == gpa
                    && layout.sameRegion(zeroGpa[zeroCount - 1], gpa)) {
                zeroPages[zeroCount - 1]++;
            } else {
                if (zeroCount == zeroGpa.length) {
                    zeroGpa = Arrays.copyOf(zeroGpa, zeroCount * 2);
                    zeroPages = Arrays.copyOf(zeroPages, zeroCount * 2);
                }
                zeroGpa[zeroCount] = gpa;
                zeroPages[zeroCount] = 1;
                zeroCount++;
            }
            zeroPageCount++;
            hashes.set(gpa, 0);
        }

        /** The batch so far; the builder is reset for the next batch. */
        OutgoingBatch build(boolean endOfRound) {
            OutgoingBatch b = new OutgoingBatch(this, endOfRound);
            runCount = 0;
            zeroCount = 0;
            dataPages = 0;
            zeroPageCount = 0;
            return b;
        }
    }
}
