package dev.ferry.dataplane;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import org.junit.jupiter.api.Test;

/** The varint reader of the hand-written page-batch and fault-reply parsers. */
class ProtoStreamsTest {
    private static long varint(int... bytes) throws IOException {
        byte[] b = new byte[bytes.length];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) bytes[i];
        }
        ByteArrayInputStream in = new ByteArrayInputStream(b);
        long v = ProtoStreams.readVarint(in, ProtoStreams.readByte(in));
        assertEquals(0, in.available(), "read exactly the varint");
        return v;
    }

    @Test
    void readsTheFullRange() throws IOException {
        assertEquals(0, varint(0));
        assertEquals(300, varint(0xac, 0x02));
        assertEquals(-1L, varint(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01));
        assertEquals(Long.MIN_VALUE, varint(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01));
    }

    /** Found by PagerReplyFuzzTest: a tenth byte above 1 was dropped here and folded in by protobuf-java. */
    @Test
    void refusesBitsBeyond64() {
        IOException e = assertThrows(IOException.class,
                () -> varint(0xb6, 0xb6, 0xb6, 0xb6, 0xb6, 0xb6, 0xb6, 0x80, 0xb6, 0x42));
        assertTrue(e.getMessage().contains("over 64 bits"), e.getMessage());
        assertThrows(IOException.class, () -> varint(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02));
        assertThrows(IOException.class,
                () -> varint(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00));
    }

    /**
     * Found by PagerReplyFuzzTest: protobuf-java 3.25.8 reads 81 d9 e0 b6 b6 b6 b6 b6 9d 00 as -7103063147722298239
     * from a byte array (its fast path takes the 10th byte for 1) and as 2120308889132477569 from a short stream.
     */
    @Test
    void refusesATenthByteOfZero() throws IOException {
        IOException e = assertThrows(IOException.class,
                () -> varint(0x81, 0xd9, 0xe0, 0xb6, 0xb6, 0xb6, 0xb6, 0xb6, 0x9d, 0x00));
        assertTrue(e.getMessage().contains("10th byte of 0"), e.getMessage());
        assertEquals(1, varint(0x81, 0x00), "shorter overlong forms mean one thing and stay accepted");
    }
}
