package dev.ferry.dataplane;

import io.grpc.KnownLength;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;

/**
 * Reading protobuf wire format straight off a gRPC input stream, for the hand-written parsers of
 * page batches and fault replies (which must stop at the data field instead of parsing it).
 */
public final class ProtoStreams {
    private ProtoStreams() {}

    public static int readByte(InputStream in) throws IOException {
        int x = in.read();
        if (x < 0) {
            throw new EOFException("message ends inside a field");
        }
        return x;
    }

    /**
     * A varint of at most 64 bits. The tenth byte carries only bit 63: any higher bit set there is refused (found by
     * fuzzing: they used to be dropped silently, while protobuf-java folds them into the value, so the two parsers
     * read different numbers from the same malformed bytes).
     */
    public static long readVarint(InputStream in, int first) throws IOException {
        long result = first & 0x7f;
        int b = first;
        for (int shift = 7; (b & 0x80) != 0; shift += 7) {
            if (shift > 63) {
                throw new IOException("malformed varint: longer than 10 bytes");
            }
            b = readByte(in);
            if (shift == 63 && (b & 0x7e) != 0) {
                throw new IOException("malformed varint: over 64 bits");
            }
            // A 10th byte holds bit 63 alone, so it is 1. protobuf-java's fast path assumes so and reads a 10th
            // byte of 0 as 1 (its slow path reads 0): a varint read two ways is refused.
            if (shift == 63 && (b & 0x7f) == 0) {
                throw new IOException("malformed varint: a 10th byte of 0");
            }
            result |= (long) (b & 0x7f) << shift;
        }
        return result;
    }

    public static int readLength(InputStream in) throws IOException {
        long len = readVarint(in, readByte(in));
        if (len < 0 || len > Integer.MAX_VALUE) {
            throw new IOException("length " + len + " out of range");
        }
        if (in instanceof KnownLength && len > in.available()) {
            throw new EOFException("length " + len + " beyond the end of the message");
        }
        return (int) len;
    }

    public static void skipField(InputStream in, int wireType) throws IOException {
        switch (wireType) {
            case PageWire.WIRETYPE_VARINT -> readVarint(in, readByte(in));
            case PageWire.WIRETYPE_FIXED64 -> skipFully(in, 8);
            case PageWire.WIRETYPE_LENGTH_DELIMITED -> skipFully(in, readLength(in));
            case PageWire.WIRETYPE_FIXED32 -> skipFully(in, 4);
            default -> throw new IOException("unsupported wire type " + wireType);
        }
    }

    public static void readFully(InputStream in, byte[] b, int off, int len) throws IOException {
        while (len > 0) {
            int n = in.read(b, off, len);
            if (n < 0) {
                throw new EOFException("message ends inside a field");
            }
            off += n;
            len -= n;
        }
    }

    public static void skipFully(InputStream in, long n) throws IOException {
        while (n > 0) {
            long s = in.skip(n);
            if (s <= 0) {
                if (in.read() < 0) {
                    throw new EOFException("message ends inside a field");
                }
                s = 1;
            }
            n -= s;
        }
    }
}
