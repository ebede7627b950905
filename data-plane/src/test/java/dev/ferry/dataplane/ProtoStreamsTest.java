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
}
