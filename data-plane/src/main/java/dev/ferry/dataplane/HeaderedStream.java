package dev.ferry.dataplane;

import io.grpc.Drainable;
import io.grpc.KnownLength;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/**
 * A message serialized on demand: a header (its small fields, encoded up front) and then a body of
 * bulk bytes produced in place, from guest memory, by the subclass. gRPC's Netty transport drains it
 * straight into its buffers ({@link #drainTo}, the fast path); the in-process transport reads it.
 */
public abstract class HeaderedStream extends InputStream implements Drainable, KnownLength {
    private final byte[] header;
    private int headerPos;
    private int remaining;

    protected HeaderedStream(byte[] header, int bodyLength) {
        this.header = header;
        this.remaining = header.length + bodyLength;
    }

    /** Writes the rest of the body to {@code target}; returns how many bytes that was. */
    protected abstract int drainBody(OutputStream target) throws IOException;

    /** Copies the next 1 to {@code len} body bytes into {@code b}; never asked for more than is left. */
    protected abstract int readBody(byte[] b, int off, int len) throws IOException;

    @Override
    public final int available() {
        return remaining;
    }

    @Override
    public final int drainTo(OutputStream target) throws IOException {
        int written = 0;
        if (headerPos < header.length) {
            target.write(header, headerPos, header.length - headerPos);
            written += header.length - headerPos;
            headerPos = header.length;
        }
        written += drainBody(target);
        remaining = 0;
        return written;
    }

    @Override
    public final int read() throws IOException {
        byte[] one = new byte[1];
        return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
    }

    @Override
    public final int read(byte[] b, int off, int len) throws IOException {
        if (len == 0) {
            return 0;
        }
        if (remaining == 0) {
            return -1;
        }
        int total = 0;
        while (len > 0 && remaining > 0) {
            int n;
            if (headerPos < header.length) {
                n = Math.min(len, header.length - headerPos);
                System.arraycopy(header, headerPos, b, off, n);
                headerPos += n;
            } else {
                n = readBody(b, off, Math.min(len, remaining));
            }
            off += n;
            len -= n;
            total += n;
            remaining -= n;
        }
        return total;
    }
}
