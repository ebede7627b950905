package dev.ferry.state;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import java.io.ByteArrayInputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Coverage-guided fuzzing of the state-stream decoder (docs/fuzzing.md): whatever the bytes, {@link StateCodec}
 * either returns a section set or throws a {@link StateException} (its subclasses StateCorruptedException and
 * UnsupportedStateFormatException included), never anything else; and a decoded set restores all-or-nothing.
 *
 * <p>Input layout (FuzzedDataProvider): the last byte chooses whether to reseal the envelope (low bit set: fix its
 * length and CRC32C so the damage reaches the protobuf and section checks instead of stopping at the checksum, which
 * a fuzzer cannot forge); the rest is the stream. Seeds: {@link StateFuzzSeedsTest}.
 */
class StateCodecFuzzTest {
    /** The sections {@link FuzzPropertyTest#target} has components for. */
    private static final Set<String> REGISTERED = registeredLabels();

    @FuzzTest(maxDuration = "10s")
    void decodeRefusesOrRestoresWhole(FuzzedDataProvider data) throws Exception {
        boolean reseal = (data.consumeByte() & 1) != 0;
        byte[] bytes = data.consumeRemainingAsBytes();
        if (reseal) {
            bytes = reseal(bytes);
        }
        SectionSet set;
        try {
            set = StateCodec.decode(bytes);
        } catch (StateException refused) {
            try {
                StateCodec.read(new ByteArrayInputStream(bytes)); // may accept: a stream may continue after the state
            } catch (StateException alsoRefused) {
                // fine
            }
            return;
        }
        assertEquals(set, StateCodec.read(new ByteArrayInputStream(bytes)), "read() and decode() disagree");
        assertEquals(set, StateCodec.decode(StateCodec.encode(set)), "re-encoding changed the set");
        StateJson.toJson(set, TestSchemas.all());
        StateDiff.diff(set, SectionSet.empty(), TestSchemas.all());

        List<String> journal = Recording.journal();
        StateRegistry target = FuzzPropertyTest.target(journal);
        try {
            target.restore(set);
        } catch (StateException refused) {
            assertEquals(List.of(), journal, "refused after restoring some components: " + refused.getMessage());
            return;
        }
        Set<String> expected = new HashSet<>();
        for (Section s : set) {
            if (REGISTERED.contains(s.label())) {
                expected.add("restore " + s.label());
            }
        }
        assertEquals(expected, new HashSet<>(journal), "restore accepted the set but did not restore each component once");
        assertEquals(expected.size(), journal.size(), "a component was restored twice");
    }

    /** Fixes the envelope's length and CRC32C fields when the bytes are long enough to have them. */
    static byte[] reseal(byte[] bytes) {
        if (bytes.length < StateCodec.HEADER_BYTES) {
            return bytes;
        }
        int n = bytes.length - StateCodec.HEADER_BYTES;
        ByteBuffer.wrap(bytes).putLong(12, n).putInt(20, StateCodec.crc32c(bytes, StateCodec.HEADER_BYTES, n));
        return bytes;
    }

    private static Set<String> registeredLabels() {
        Set<String> labels = new HashSet<>();
        for (Section s : FuzzPropertyTest.target(new ArrayList<>()).save()) {
            labels.add(s.label());
        }
        return labels;
    }
}
