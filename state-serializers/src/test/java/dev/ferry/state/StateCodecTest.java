package dev.ferry.state;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.ferry.state.v1.StateStream;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.SequenceInputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.Test;

class StateCodecTest {
    static final SectionSet SAMPLE = SectionSet.of(
            new Section("kvm.vm", "", 1, 1, true, ByteString.copyFromUtf8("vm")),
            new Section("kvm.vcpu", "0", 3, 2, true, ByteString.copyFrom(new byte[] {0, 1, 2, (byte) 0xff})),
            new Section("device.serial", "com1", 1, 1, false, ByteString.EMPTY));

    @Test
    void envelopeLayout() throws Exception {
        byte[] bytes = StateCodec.encode(SAMPLE);
        ByteBuffer b = ByteBuffer.wrap(bytes);
        byte[] magic = new byte[8];
        b.get(magic);
        assertArrayEquals("FERRYST\0".getBytes(StandardCharsets.US_ASCII), magic);
        assertEquals(1, b.getInt());
        long length = b.getLong();
        assertEquals(bytes.length - 24, length);
        int crc = b.getInt();
        CRC32C expected = new CRC32C();
        expected.update(bytes, 24, bytes.length - 24);
        assertEquals((int) expected.getValue(), crc);
        StateStream stream = StateStream.parseFrom(ByteBuffer.wrap(bytes, 24, bytes.length - 24));
        assertEquals(1, stream.getFormatVersion());
        assertEquals(3, stream.getSectionsCount());
        assertEquals("com1", stream.getSections(2).getInstanceId());
        assertEquals(SAMPLE, StateCodec.decode(bytes));
    }

    @Test
    void emptySetRoundTrips() throws StateException {
        assertEquals(SectionSet.empty(), StateCodec.decode(StateCodec.encode(SectionSet.empty())));
    }

    @Test
    void encodingIsDeterministic() {
        assertArrayEquals(StateCodec.encode(SAMPLE), StateCodec.encode(SectionSet.of(SAMPLE.sections())));
    }

    @Test
    void refusesWrongMagic() {
        byte[] bytes = StateCodec.encode(SAMPLE);
        bytes[0] = 'G';
        assertMessage(bytes, "not a Ferry state file: starts with bytes 47 45 52 52 59 53 54 00, expected the magic");
        assertMessage(new byte[0], "state file is empty (0 bytes)");
        assertMessage(new byte[] {'F', 'E', 'R'}, "state file truncated: 3 bytes, shorter than the 24-byte header");
        assertMessage("{\"formatVersion\": 1}".getBytes(StandardCharsets.UTF_8), "not a Ferry state file");
    }

    @Test
    void refusesTruncation() {
        byte[] bytes = StateCodec.encode(SAMPLE);
        assertMessage(Arrays.copyOf(bytes, 10), "state file truncated: 10 bytes, shorter than the 24-byte header");
        assertMessage(Arrays.copyOf(bytes, bytes.length - 1), "state file truncated: header announces "
                + (bytes.length - 24) + " payload bytes, only " + (bytes.length - 25) + " present");
    }

    @Test
    void refusesTrailingBytes() {
        byte[] bytes = Arrays.copyOf(StateCodec.encode(SAMPLE), StateCodec.encode(SAMPLE).length + 3);
        assertMessage(bytes, "state file has 3 unexpected bytes after the");
    }

    @Test
    void refusesOtherEnvelopeVersions() {
        byte[] bytes = StateCodec.encode(SAMPLE);
        ByteBuffer.wrap(bytes).putInt(8, 2);
        assertMessage(bytes, "state file envelope version 2 is not supported: this build reads version 1"
                + " (written by a newer Ferry?)");
        ByteBuffer.wrap(bytes).putInt(8, 0);
        assertMessage(bytes, "state file envelope version 0 is not supported");
    }

    @Test
    void refusesOversizedLengthWithoutAllocating() throws IOException {
        byte[] bytes = StateCodec.encode(SAMPLE);
        ByteBuffer.wrap(bytes).putLong(12, Long.MAX_VALUE);
        assertMessage(bytes, "state file header announces a payload of 9223372036854775807 bytes, over the limit of"
                + " 268435456: the header is corrupted");
        ByteBuffer.wrap(bytes).putLong(12, -1L);
        assertMessage(bytes, "state file header announces a payload of 18446744073709551615 bytes");
        // Streaming: a plausible length with a short stream must fail on EOF, not allocate 256 MiB up front.
        ByteBuffer.wrap(bytes).putLong(12, StateCodec.MAX_PAYLOAD_BYTES);
        StateException e = assertThrows(StateException.class, () -> StateCodec.read(new ByteArrayInputStream(bytes)));
        assertTrue(e.getMessage().startsWith("state stream truncated: header announces 268435456 payload bytes"),
                e.getMessage());
    }

    @Test
    void refusesChecksumMismatch() {
        byte[] bytes = StateCodec.encode(SAMPLE);
        bytes[bytes.length - 1] ^= 0x01;
        assertMessage(bytes, "state file checksum mismatch (stored CRC32C ");
    }

    /** Callers tell damage in transit from a stream that is well-formed but of another format, and from the rest. */
    @Test
    void kindsOfRefusal() {
        byte[] flipped = StateCodec.encode(SAMPLE);
        flipped[flipped.length - 1] ^= 0x01;
        assertThrows(StateCorruptedException.class, () -> StateCodec.decode(flipped));
        byte[] all = StateCodec.encode(SAMPLE);
        assertThrows(StateCorruptedException.class, () -> StateCodec.decode(Arrays.copyOf(all, all.length - 1)));
        assertThrows(UnsupportedStateFormatException.class, () -> StateCodec.decode(
                envelope(StateStream.newBuilder().setFormatVersion(2).build().toByteArray())));
        byte[] envelope2 = StateCodec.encode(SAMPLE);
        ByteBuffer.wrap(envelope2).putInt(8, 2);
        assertThrows(UnsupportedStateFormatException.class, () -> StateCodec.decode(envelope2));
        StateException malformed = assertThrows(StateException.class,
                () -> StateCodec.decode(envelope(new byte[] {(byte) 0xff})));
        assertTrue(!(malformed instanceof StateCorruptedException) && !(malformed instanceof UnsupportedStateFormatException));
    }

    @Test
    void refusesInvalidStreamsWithAValidChecksum() {
        assertMessage(envelope(new byte[] {(byte) 0xff}), "state stream payload is not a valid ferry.state.v1.StateStream");
        assertMessage(envelope(StateStream.newBuilder().build().toByteArray()),
                "state stream has no format version (0 is invalid)");
        assertMessage(envelope(StateStream.newBuilder().setFormatVersion(2).build().toByteArray()),
                "state stream format version 2 is not supported: this build reads format version 1");
        StateStream dup = StateCodec.toStream(SAMPLE).toBuilder()
                .addSections(StateCodec.toStream(SAMPLE).getSections(1)).build();
        assertMessage(envelope(dup.toByteArray()), "section kvm.vcpu/0: appears more than once in the stream");
        StateStream badVersion = StateCodec.toStream(SAMPLE).toBuilder()
                .setSections(1, StateCodec.toStream(SAMPLE).getSections(1).toBuilder().setMinReaderVersion(4)).build();
        assertMessage(envelope(badVersion.toByteArray()),
                "section kvm.vcpu/0: invalid minReaderVersion 4 (must be between 1 and the section version 3)");
        StateStream badName = StateCodec.toStream(SAMPLE).toBuilder()
                .setSections(0, StateCodec.toStream(SAMPLE).getSections(0).toBuilder().setName("a\u0000b")).build();
        assertMessage(envelope(badName.toByteArray()), "section a\\u0000b: invalid section name");
    }

    @Test
    void readConsumesExactlyOneStream() throws IOException, StateException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        StateCodec.write(SAMPLE, out);
        StateCodec.write(SectionSet.empty(), out);
        InputStream in = new ByteArrayInputStream(out.toByteArray());
        assertEquals(SAMPLE, StateCodec.read(in));
        assertEquals(SectionSet.empty(), StateCodec.read(in));
        assertThrows(StateException.class, () -> StateCodec.read(in));
        InputStream shortHeader = new SequenceInputStream(new ByteArrayInputStream(StateCodec.magic()),
                new ByteArrayInputStream(new byte[3]));
        StateException e = assertThrows(StateException.class, () -> StateCodec.read(shortHeader));
        assertEquals("state stream truncated: ended after 11 bytes, inside the 24-byte header", e.getMessage());
    }

    /** Wraps a payload in a correct envelope (right length and checksum). */
    static byte[] envelope(byte[] payload) {
        CRC32C crc = new CRC32C();
        crc.update(payload);
        return ByteBuffer.allocate(24 + payload.length).put(StateCodec.magic()).putInt(1).putLong(payload.length)
                .putInt((int) crc.getValue()).put(payload).array();
    }

    private static void assertMessage(byte[] bytes, String prefix) {
        StateException e = assertThrows(StateException.class, () -> StateCodec.decode(bytes));
        assertTrue(e.getMessage().startsWith(prefix), () -> "expected a message starting with\n  " + prefix
                + "\nbut got\n  " + e.getMessage());
    }
}
