package dev.ferry.dataplane;

import io.grpc.KnownLength;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A marshaller of messages as raw bytes, for fuzz tests that send what no encoder would. Its stream knows its length,
 * like the Netty transport's: the in-process transport hands the sender's stream to the receiver's parser as it is.
 */
public final class RawBytes {
    public static final MethodDescriptor.Marshaller<byte[]> MARSHALLER = new MethodDescriptor.Marshaller<>() {
        @Override
        public InputStream stream(byte[] value) {
            return new Known(value);
        }

        @Override
        public byte[] parse(InputStream in) {
            try {
                return in.readAllBytes();
            } catch (IOException e) {
                throw Status.INTERNAL.withDescription("reading a raw message failed").withCause(e).asRuntimeException();
            }
        }
    };

    private RawBytes() {
    }

    /** {@code bytes} in a stream that knows its length. */
    public static InputStream stream(byte[] bytes) {
        return new Known(bytes);
    }

    /**
     * Up to {@code max} messages from {@code input}, starting at {@code from}: each a 2-byte big-endian length and
     * that many bytes (fewer if the input ends first). The message layout of the fuzz tests' inputs.
     */
    public static List<byte[]> split(byte[] input, int from, int max) {
        List<byte[]> out = new ArrayList<>();
        int at = from;
        while (out.size() < max && at + 2 <= input.length) {
            int len = ((input[at] & 0xff) << 8) | (input[at + 1] & 0xff);
            at += 2;
            int n = Math.min(len, input.length - at);
            out.add(Arrays.copyOfRange(input, at, at + n));
            at += n;
        }
        return out;
    }

    /** The inverse of {@link #split}, for seeds: {@code head}, then each message with its length. */
    public static byte[] join(byte[] head, List<byte[]> messages) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes(head);
        for (byte[] m : messages) {
            out.write(m.length >>> 8);
            out.write(m.length);
            out.writeBytes(m);
        }
        return out.toByteArray();
    }

    private static final class Known extends ByteArrayInputStream implements KnownLength {
        Known(byte[] b) {
            super(b);
        }
    }
}
