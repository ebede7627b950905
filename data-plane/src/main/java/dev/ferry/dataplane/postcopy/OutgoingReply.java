package dev.ferry.dataplane.postcopy;

import com.google.protobuf.CodedOutputStream;
import dev.ferry.dataplane.HeaderedStream;
import dev.ferry.memory.MemoryRegion;
import io.grpc.MethodDescriptor;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;

/**
 * A PageFaultReply on the source side, before serialization: the header fields and a reference to the guest memory
 * that makes up {@code data}. Nothing is copied until gRPC serializes it ({@link #MARSHALLER}): the header is written,
 * then the bytes are copied from guest memory straight to gRPC's output (Netty: {@link ReplyStream#drainTo}; in-process:
 * read by the receiver). Every read of guest memory is bracketed by the source's memory fence.
 *
 * <p>The encoding is exactly the generated PageFaultReply encoding (fields in number order, proto3 defaults omitted),
 * with {@code data} (field 15) last.
 */
final class OutgoingReply {
    static final MethodDescriptor.Marshaller<OutgoingReply> MARSHALLER = new MethodDescriptor.Marshaller<>() {
        @Override
        public InputStream stream(OutgoingReply value) {
            return value.new ReplyStream();
        }

        @Override
        public OutgoingReply parse(InputStream stream) {
            throw new UnsupportedOperationException("the source does not receive PageFaultReply messages");
        }
    };

    /** Bytes copied from guest memory per step of drainTo: 64 KiB stays in L2. */
    static final int STAGE_BYTES = 64 << 10;
    private static final byte[] ZEROS = new byte[STAGE_BYTES];
    private static final ThreadLocal<byte[]> STAGE = ThreadLocal.withInitial(() -> new byte[STAGE_BYTES]);

    final long faultId;
    final long gpa;
    final boolean zero;
    final boolean last;
    private final PageSource source;
    private final MemoryRegion region;  // null without data
    private final int dataLength;
    private final boolean hole;         // the data range is a memfd hole: send zeros without reading memory
    private final byte[] header;

    private OutgoingReply(long faultId, long gpa, boolean zero, boolean last, PageSource source, MemoryRegion region,
            int dataLength, boolean hole) {
        this.faultId = faultId;
        this.gpa = gpa;
        this.zero = zero;
        this.last = last;
        this.source = source;
        this.region = region;
        this.dataLength = dataLength;
        this.hole = hole;
        this.header = encodeHeader();
    }

    /** The only reply of a fault whose whole page is zero. */
    static OutgoingReply zero(long faultId, long gpa) {
        return new OutgoingReply(faultId, gpa, true, true, null, null, 0, false);
    }

    /** A reply carrying {@code length} bytes of {@code region} from {@code gpa}. */
    static OutgoingReply data(long faultId, long gpa, boolean last, PageSource source, MemoryRegion region, int length,
            boolean hole) {
        return new OutgoingReply(faultId, gpa, false, last, source, region, length, hole);
    }

    int dataLength() {
        return dataLength;
    }

    int serializedSize() {
        return header.length + dataLength;
    }

    private byte[] encodeHeader() {
        int size = 0;
        if (faultId != 0) {
            size += CodedOutputStream.computeUInt64Size(PagerWire.FAULT_ID, faultId);
        }
        if (gpa != 0) {
            size += CodedOutputStream.computeUInt64Size(PagerWire.GPA, gpa);
        }
        if (zero) {
            size += CodedOutputStream.computeBoolSize(PagerWire.ZERO, true);
        }
        if (last) {
            size += CodedOutputStream.computeBoolSize(PagerWire.LAST, true);
        }
        if (dataLength > 0) {
            size += CodedOutputStream.computeTagSize(PagerWire.DATA) + CodedOutputStream.computeUInt32SizeNoTag(dataLength);
        }
        byte[] out = new byte[size];
        CodedOutputStream c = CodedOutputStream.newInstance(out);
        try {
            if (faultId != 0) {
                c.writeUInt64(PagerWire.FAULT_ID, faultId);
            }
            if (gpa != 0) {
                c.writeUInt64(PagerWire.GPA, gpa);
            }
            if (zero) {
                c.writeBool(PagerWire.ZERO, true);
            }
            if (last) {
                c.writeBool(PagerWire.LAST, true);
            }
            if (dataLength > 0) {
                c.writeTag(PagerWire.DATA, PagerWire.WIRETYPE_LENGTH_DELIMITED);
                c.writeUInt32NoTag(dataLength);
            }
            c.checkNoSpaceLeft();
        } catch (IOException e) {
            throw new UncheckedIOException(e); // cannot happen: the array is sized exactly
        }
        return out;
    }

    /** The serialized reply: drained by Netty, read by the in-process receiver. */
    final class ReplyStream extends HeaderedStream {
        private int dataPos;
        private byte[] chunk;           // read path: staged bytes [chunkStart, chunkEnd) of data
        private int chunkStart;
        private int chunkEnd;

        ReplyStream() {
            super(header, dataLength);
        }

        @Override
        protected int drainBody(OutputStream target) throws IOException {
            int written = 0;
            byte[] stage = hole ? ZEROS : STAGE.get();
            while (dataPos < dataLength) {
                int n = Math.min(STAGE_BYTES, dataLength - dataPos);
                if (!hole) {
                    stage(dataPos, stage, n);
                }
                target.write(stage, 0, n);
                dataPos += n;
                written += n;
            }
            return written;
        }

        @Override
        protected int readBody(byte[] b, int off, int len) throws IOException {
            if (chunk == null || dataPos >= chunkEnd) {
                if (chunk == null) {
                    chunk = new byte[Math.min(STAGE_BYTES, dataLength)];
                }
                chunkStart = dataPos;
                chunkEnd = dataPos + Math.min(chunk.length, dataLength - dataPos);
                if (hole) {
                    java.util.Arrays.fill(chunk, (byte) 0);
                } else {
                    stage(chunkStart, chunk, chunkEnd - chunkStart);
                }
            }
            int n = Math.min(len, chunkEnd - dataPos);
            System.arraycopy(chunk, dataPos - chunkStart, b, off, n);
            dataPos += n;
            return n;
        }

        /** Copies {@code n} data bytes from offset {@code pos} of the reply's range into {@code dst}, fenced. */
        private void stage(int pos, byte[] dst, int n) throws IOException {
            if (!source.enterMemory()) {
                throw new IOException("postcopy pager session closed: source memory may no longer be read");
            }
            try {
                region.view().get((int) (gpa - region.guestPhysAddr()) + pos, dst, 0, n);
            } finally {
                source.exitMemory();
            }
        }
    }
}
