package dev.ferry.state;

import com.google.protobuf.CodedInputStream;
import com.google.protobuf.InvalidProtocolBufferException;
import dev.ferry.state.v1.StateStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * The binary form of a state stream, for files and the wire. All integers big-endian:
 * <pre>
 *   offset  size  field
 *        0     8  magic "FERRYST\0"
 *        8     4  envelope version ({@value #ENVELOPE_VERSION})
 *       12     8  payload length (at most {@value #MAX_PAYLOAD_BYTES})
 *       20     4  CRC32C of the payload
 *       24     n  payload: a protobuf ferry.state.v1.StateStream
 * </pre>
 * Decoding checks all of it (magic, version, exact length, checksum, then the stream's format version and every
 * section header) before returning, and reports any problem as a {@link StateException}. Encoding is deterministic:
 * the same {@link SectionSet} always gives the same bytes.
 */
public final class StateCodec {
    /** The 8 bytes every state file starts with. */
    private static final byte[] MAGIC = "FERRYST\0".getBytes(StandardCharsets.US_ASCII);
    /** Version of the envelope layout above. */
    public static final int ENVELOPE_VERSION = 1;
    /** Version of the StateStream message layout and meaning ({@code StateStream.format_version}). */
    public static final int FORMAT_VERSION = 1;
    /** Size of the fixed header before the payload. */
    public static final int HEADER_BYTES = 24;
    /** Largest accepted payload: device state is small; a larger length means corruption. */
    public static final int MAX_PAYLOAD_BYTES = 256 << 20;

    private StateCodec() {
    }

    /** The magic number, {@code "FERRYST\0"}. */
    public static byte[] magic() {
        return MAGIC.clone();
    }

    /**
     * Encodes a section set into the binary envelope.
     *
     * @throws IllegalArgumentException if the encoded stream exceeds {@link #MAX_PAYLOAD_BYTES}
     */
    public static byte[] encode(SectionSet set) {
        byte[] payload = toStream(set).toByteArray();
        if (payload.length > MAX_PAYLOAD_BYTES) {
            throw new IllegalArgumentException("state stream is " + payload.length + " bytes, over the limit of "
                    + MAX_PAYLOAD_BYTES + " (largest section: " + largest(set) + ")");
        }
        ByteBuffer out = ByteBuffer.allocate(HEADER_BYTES + payload.length);
        out.put(MAGIC).putInt(ENVELOPE_VERSION).putLong(payload.length).putInt(crc32c(payload, 0, payload.length))
                .put(payload);
        return out.array();
    }

    /** Writes {@link #encode(SectionSet)} to a stream. */
    public static void write(SectionSet set, OutputStream out) throws IOException {
        out.write(encode(set));
    }

    /**
     * Decodes and fully verifies an encoded state stream.
     *
     * @throws StateException if the bytes are truncated, corrupted, oversized, not a state stream, of an unsupported
     *                        version, or contain an invalid or duplicate section header
     */
    public static SectionSet decode(byte[] bytes) throws StateException {
        if (bytes.length == 0) {
            throw new StateException("state file is empty (0 bytes)");
        }
        if (bytes.length < HEADER_BYTES) {
            if (!startsWithMagicPrefix(bytes)) {
                throw notAStateFile(bytes);
            }
            throw new StateCorruptedException("state file truncated: " + bytes.length + " bytes, shorter than the "
                    + HEADER_BYTES + "-byte header");
        }
        long length = checkHeader(bytes);
        long present = bytes.length - HEADER_BYTES;
        if (present < length) {
            throw new StateCorruptedException("state file truncated: header announces " + length + " payload bytes, only "
                    + present + " present");
        }
        if (present > length) {
            throw new StateCorruptedException("state file has " + (present - length) + " unexpected bytes after the "
                    + length + "-byte payload");
        }
        return checkPayload(bytes, HEADER_BYTES, (int) length, ByteBuffer.wrap(bytes, 20, 4).getInt());
    }

    /**
     * Reads one encoded state stream from {@code in} (exactly its bytes; the stream may continue) and verifies it as
     * {@link #decode(byte[])} does. Allocates no more than the bytes actually present, whatever the header says.
     *
     * @throws StateException if the data is not a valid state stream, including when it ends early
     * @throws IOException    if reading fails
     */
    public static SectionSet read(InputStream in) throws IOException, StateException {
        byte[] header = in.readNBytes(HEADER_BYTES);
        if (header.length == 0) {
            throw new StateException("state stream is empty (ended before the header)", new EOFException());
        }
        if (header.length < HEADER_BYTES) {
            if (!startsWithMagicPrefix(header)) {
                throw notAStateFile(header);
            }
            throw new StateCorruptedException("state stream truncated: ended after " + header.length + " bytes, inside the "
                    + HEADER_BYTES + "-byte header");
        }
        int length = (int) checkHeader(header);
        byte[] payload = in.readNBytes(length);
        if (payload.length < length) {
            throw new StateCorruptedException("state stream truncated: header announces " + length + " payload bytes, stream"
                    + " ended after " + payload.length, new EOFException());
        }
        return checkPayload(payload, 0, length, ByteBuffer.wrap(header, 20, 4).getInt());
    }

    /** Checks magic, version and length bound; returns the payload length. */
    private static long checkHeader(byte[] bytes) throws StateException {
        if (!Arrays.equals(bytes, 0, MAGIC.length, MAGIC, 0, MAGIC.length)) {
            throw notAStateFile(bytes);
        }
        ByteBuffer header = ByteBuffer.wrap(bytes, 0, HEADER_BYTES);
        int version = header.getInt(8);
        if (version != ENVELOPE_VERSION) {
            throw new UnsupportedStateFormatException("state file envelope version " + Integer.toUnsignedString(version)
                    + " is not supported: this build reads version " + ENVELOPE_VERSION
                    + (Integer.compareUnsigned(version, ENVELOPE_VERSION) > 0 ? " (written by a newer Ferry?)" : ""));
        }
        long length = header.getLong(12);
        if (length < 0 || length > MAX_PAYLOAD_BYTES) {
            throw new StateCorruptedException("state file header announces a payload of " + Long.toUnsignedString(length)
                    + " bytes, over the limit of " + MAX_PAYLOAD_BYTES + ": the header is corrupted");
        }
        return length;
    }

    private static SectionSet checkPayload(byte[] buf, int off, int len, int storedCrc) throws StateException {
        int crc = crc32c(buf, off, len);
        if (crc != storedCrc) {
            throw new StateCorruptedException(String.format("state file checksum mismatch (stored CRC32C %08x, computed %08x):"
                    + " the data is corrupted", storedCrc, crc));
        }
        StateStream stream;
        try {
            CodedInputStream cis = CodedInputStream.newInstance(buf, off, len);
            cis.setSizeLimit(MAX_PAYLOAD_BYTES);
            stream = StateStream.parseFrom(cis);
            cis.checkLastTagWas(0);
        } catch (InvalidProtocolBufferException e) {
            throw new StateException("state stream payload is not a valid ferry.state.v1.StateStream: "
                    + e.getMessage(), e);
        } catch (IOException e) {
            throw new StateException("state stream payload could not be parsed: " + e.getMessage(), e);
        }
        return fromStream(stream);
    }

    /** The protobuf form of a section set, with the current format version. */
    static StateStream toStream(SectionSet set) {
        StateStream.Builder b = StateStream.newBuilder().setFormatVersion(FORMAT_VERSION);
        for (Section s : set) {
            b.addSections(dev.ferry.state.v1.Section.newBuilder()
                    .setName(s.name())
                    .setInstanceId(s.instanceId())
                    .setVersion(s.version())
                    .setMinReaderVersion(s.minReaderVersion())
                    .setRequired(s.required())
                    .setPayload(s.payload()));
        }
        return b.build();
    }

    /** Validates a decoded StateStream (format version, each section header, uniqueness) into a section set. */
    static SectionSet fromStream(StateStream stream) throws StateException {
        checkFormatVersion(stream.getFormatVersion());
        List<Section> sections = new ArrayList<>(stream.getSectionsCount());
        for (dev.ferry.state.v1.Section s : stream.getSectionsList()) {
            String problem = Section.problem(s.getName(), s.getInstanceId(), s.getVersion(), s.getMinReaderVersion());
            if (problem != null) {
                throw new StateException(s.getName(), s.getInstanceId(), problem);
            }
            sections.add(new Section(s.getName(), s.getInstanceId(), s.getVersion(), s.getMinReaderVersion(),
                    s.getRequired(), s.getPayload()));
        }
        return SectionSet.validated(sections);
    }

    static void checkFormatVersion(int formatVersion) throws StateException {
        if (formatVersion == 0) {
            throw new UnsupportedStateFormatException("state stream has no format version (0 is invalid)");
        }
        if (formatVersion != FORMAT_VERSION) {
            throw new UnsupportedStateFormatException("state stream format version " + Integer.toUnsignedString(formatVersion)
                    + " is not supported: this build reads format version " + FORMAT_VERSION);
        }
    }

    static int crc32c(byte[] buf, int off, int len) {
        CRC32C crc = new CRC32C();
        crc.update(buf, off, len);
        return (int) crc.getValue();
    }

    private static boolean startsWithMagicPrefix(byte[] bytes) {
        return Arrays.equals(bytes, 0, Math.min(bytes.length, MAGIC.length), MAGIC, 0,
                Math.min(bytes.length, MAGIC.length));
    }

    private static StateException notAStateFile(byte[] bytes) {
        byte[] start = Arrays.copyOf(bytes, Math.min(bytes.length, MAGIC.length));
        return new StateException("not a Ferry state file: starts with bytes " + HexFormat.ofDelimiter(" ")
                .formatHex(start) + ", expected the magic \"FERRYST\\0\"");
    }

    private static String largest(SectionSet set) {
        Section max = null;
        for (Section s : set) {
            if (max == null || s.payload().size() > max.payload().size()) {
                max = s;
            }
        }
        return max == null ? "none" : max.label() + ", " + max.payload().size() + " bytes";
    }
}
