package dev.ferry.dataplane.postcopy;

import dev.ferry.dataplane.ProtoStreams;

import io.grpc.KnownLength;
import io.grpc.MethodDescriptor;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;

/**
 * A PageFaultReply on the destination side. {@link #MARSHALLER} parses the header fields by hand and reads {@code data}
 * straight into an array of its exact size (one copy out of the transport's buffers, no ByteString in between).
 * Parsing never throws: a malformed message becomes a reply with {@link #error}, and the fetcher fails the stream.
 */
final class IncomingReply {
    long faultId;
    long gpa;
    boolean zero;
    boolean last;
    byte[] data;  // null when the field is absent or empty
    String error;

    static final MethodDescriptor.Marshaller<IncomingReply> MARSHALLER = new MethodDescriptor.Marshaller<>() {
        @Override
        public InputStream stream(IncomingReply value) {
            throw new UnsupportedOperationException("the destination does not send PageFaultReply messages");
        }

        @Override
        public IncomingReply parse(InputStream in) {
            IncomingReply r = new IncomingReply();
            try {
                parseInto(in, r);
            } catch (IOException | RuntimeException e) {
                r.error = "malformed PageFaultReply: " + e.getMessage();
                r.data = null;
            } finally {
                try {
                    in.close();
                } catch (IOException ignored) {
                    // Releasing transport buffers does not fail in practice.
                }
            }
            return r;
        }
    };

    private static void parseInto(InputStream in, IncomingReply r) throws IOException {
        while (true) {
            int first = in.read();
            if (first < 0) {
                return;
            }
            long tag = ProtoStreams.readVarint(in, first);
            int field = (int) (tag >>> 3);
            int wireType = (int) (tag & 7);
            if (field <= 0 || tag >>> 32 != 0) {
                throw new IOException("invalid tag " + tag);
            }
            if (field == PagerWire.DATA && wireType == PagerWire.WIRETYPE_LENGTH_DELIMITED) {
                long len = ProtoStreams.readVarint(in, ProtoStreams.readByte(in));
                if (len < 0 || len > PagerWire.MAX_PIECE) {
                    throw new IOException("data of " + len + " bytes (at most " + PagerWire.MAX_PIECE + ")");
                }
                if (in instanceof KnownLength && len > in.available()) {
                    throw new EOFException("data length " + len + " beyond the end of the message");
                }
                byte[] d = len == 0 ? null : new byte[(int) len];
                if (d != null) {
                    ProtoStreams.readFully(in, d, 0, d.length);
                }
                r.data = d; // a repeated field: the last one wins
            } else if (wireType == PagerWire.WIRETYPE_VARINT
                    && (field == PagerWire.FAULT_ID || field == PagerWire.GPA || field == PagerWire.ZERO
                    || field == PagerWire.LAST)) {
                long v = ProtoStreams.readVarint(in, ProtoStreams.readByte(in));
                switch (field) {
                    case PagerWire.FAULT_ID -> r.faultId = v;
                    case PagerWire.GPA -> r.gpa = v;
                    case PagerWire.ZERO -> r.zero = v != 0;
                    default -> r.last = v != 0;
                }
            } else {
                ProtoStreams.skipField(in, wireType);
            }
        }
    }
}
