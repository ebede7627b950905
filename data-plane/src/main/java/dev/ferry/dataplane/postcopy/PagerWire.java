package dev.ferry.dataplane.postcopy;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;

/** Constants of the PageFaultRequest / PageFaultReply wire format (postcopy_pager_service.proto), in one place. */
final class PagerWire {
    static final int PAGE_SIZE = 4096;
    static final int PAGE_SHIFT = 12;
    static final long SIZE_4K = 4096;
    static final long SIZE_2M = 2L << 20;
    static final long SIZE_1G = 1L << 30;
    /** A 1 GiB fault is answered in pieces of at most this many bytes. */
    static final int MAX_PIECE = 2 << 20;

    // PageFaultRequest / PageFaultReply field numbers.
    static final int FAULT_ID = 1;
    static final int GPA = 2;
    static final int LENGTH = 3; // request
    static final int ZERO = 3;   // reply
    static final int LAST = 4;   // reply
    static final int DATA = 15;  // reply

    static final int WIRETYPE_VARINT = 0;
    static final int WIRETYPE_FIXED64 = 1;
    static final int WIRETYPE_LENGTH_DELIMITED = 2;
    static final int WIRETYPE_FIXED32 = 5;

    private PagerWire() {
    }

    /** True for the page sizes a fault may cover: 4 KiB, 2 MiB, 1 GiB. */
    static boolean validLength(long length) {
        return length == SIZE_4K || length == SIZE_2M || length == SIZE_1G;
    }

    static int readByte(InputStream in) throws IOException {
        int x = in.read();
        if (x < 0) {
            throw new EOFException("message ends inside a field");
        }
        return x;
    }

    static long readVarint(InputStream in, int first) throws IOException {
        long result = first & 0x7f;
        int b = first;
        for (int shift = 7; (b & 0x80) != 0; shift += 7) {
            if (shift > 63) {
                throw new IOException("malformed varint");
            }
            b = readByte(in);
            result |= (long) (b & 0x7f) << shift;
        }
        return result;
    }

    static void readFully(InputStream in, byte[] b, int off, int len) throws IOException {
        while (len > 0) {
            int n = in.read(b, off, len);
            if (n < 0) {
                throw new EOFException("message ends inside a field");
            }
            off += n;
            len -= n;
        }
    }

    static void skipFully(InputStream in, long n) throws IOException {
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

    static void skipField(InputStream in, int wireType) throws IOException {
        switch (wireType) {
            case WIRETYPE_VARINT -> readVarint(in, readByte(in));
            case WIRETYPE_FIXED64 -> skipFully(in, 8);
            case WIRETYPE_LENGTH_DELIMITED -> skipFully(in, readVarint(in, readByte(in)));
            case WIRETYPE_FIXED32 -> skipFully(in, 4);
            default -> throw new IOException("unsupported wire type " + wireType);
        }
    }
}
