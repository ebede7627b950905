package dev.ferry.state;

import com.google.protobuf.ByteString;
import com.google.protobuf.CodedOutputStream;
import com.google.protobuf.MessageLite;
import java.io.IOException;
import java.io.UncheckedIOException;

/** Protobuf encoding helpers shared by the codec, the registry and the JSON view. */
final class Payloads {
    private Payloads() {
    }

    /**
     * Deterministic protobuf encoding (map entries sorted by key), so the same state always yields the same bytes:
     * stable checksums, byte-identical round trips and meaningful diffs.
     */
    static ByteString serialize(MessageLite message) {
        byte[] out = new byte[message.getSerializedSize()];
        CodedOutputStream cos = CodedOutputStream.newInstance(out);
        cos.useDeterministicSerialization();
        try {
            message.writeTo(cos);
            cos.checkNoSpaceLeft();
        } catch (IOException e) {
            throw new UncheckedIOException("serializing to a byte array cannot fail", e);
        }
        return ByteString.copyFrom(out);
    }
}
