package dev.ferry.dataplane;

import io.grpc.Detachable;
import io.grpc.HasByteBuffer;
import io.grpc.KnownLength;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Stands in for gRPC's transport stream: the message split into direct ByteBuffers of random sizes (so pages
 * straddle buffer boundaries), readable as a stream, through {@link HasByteBuffer}, and detachable.
 */
final class FragmentedStream extends InputStream implements KnownLength, HasByteBuffer, Detachable {
    private ArrayDeque<ByteBuffer> parts;
    private final AtomicInteger closes;

    private FragmentedStream(ArrayDeque<ByteBuffer> parts, AtomicInteger closes) {
        this.parts = parts;
        this.closes = closes;
    }

    static FragmentedStream of(byte[] data, Random rnd, int maxFragment, AtomicInteger closes) {
        ArrayDeque<ByteBuffer> parts = new ArrayDeque<>();
        int off = 0;
        while (off < data.length) {
            int n = Math.min(data.length - off, 1 + rnd.nextInt(maxFragment));
            ByteBuffer b = ByteBuffer.allocateDirect(n);
            b.put(data, off, n).flip();
            parts.add(b);
            off += n;
        }
        return new FragmentedStream(parts, closes);
    }

    private ByteBuffer head() {
        while (!parts.isEmpty() && !parts.peek().hasRemaining()) {
            parts.poll();
        }
        return parts.peek();
    }

    @Override
    public int read() {
        ByteBuffer h = head();
        return h == null ? -1 : h.get() & 0xff;
    }

    @Override
    public int read(byte[] b, int off, int len) {
        if (len == 0) {
            return 0;
        }
        ByteBuffer h = head();
        if (h == null) {
            return -1;
        }
        int n = Math.min(len, h.remaining());
        h.get(b, off, n);
        return n;
    }

    @Override
    public long skip(long n) {
        long done = 0;
        while (done < n) {
            ByteBuffer h = head();
            if (h == null) {
                break;
            }
            int k = (int) Math.min(n - done, h.remaining());
            h.position(h.position() + k);
            done += k;
        }
        return done;
    }

    @Override
    public int available() {
        int n = 0;
        for (ByteBuffer b : parts) {
            n += b.remaining();
        }
        return n;
    }

    @Override
    public boolean byteBufferSupported() {
        return true;
    }

    @Override
    public ByteBuffer getByteBuffer() {
        ByteBuffer h = head();
        return h == null ? null : h.duplicate();
    }

    @Override
    public InputStream detach() {
        FragmentedStream d = new FragmentedStream(parts, closes);
        parts = new ArrayDeque<>();
        return d;
    }

    @Override
    public void close() {
        closes.incrementAndGet();
    }
}
