package dev.ferry.state;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.ferry.state.fuzz.SeedCorpus;
import dev.ferry.state.v1.StateStream;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The seed corpus of {@link StateCodecFuzzTest}, made by the real encoder, and the test that keeps the committed
 * files equal to it ({@code -Dferry.fuzz.writeSeeds=true} rewrites them; see {@link SeedCorpus}).
 */
class StateFuzzSeedsTest {
    /** Last byte of a StateCodecFuzzTest input: 0 leaves the envelope as it is, 1 reseals it. */
    private static final byte AS_IS = 0;
    private static final byte RESEAL = 1;

    static Map<String, byte[]> decodeSeeds() {
        Map<String, byte[]> seeds = new LinkedHashMap<>();
        SectionSet saved = FuzzPropertyTest.source(new Random(1), Recording.journal()).save();
        byte[] valid = StateCodec.encode(saved);
        seeds.put("valid", input(valid, AS_IS));
        seeds.put("empty-set", input(StateCodec.encode(SectionSet.empty()), AS_IS));
        byte[] damaged = valid.clone();
        damaged[damaged.length - 3] ^= 0x40;
        seeds.put("payload-damaged-resealed", input(damaged, RESEAL));
        seeds.put("truncated-resealed", input(Arrays.copyOf(valid, valid.length - 7), RESEAL));
        StateStream stream = StateCodec.toStream(saved);
        seeds.put("format-version-2", input(StateCodecTest.envelope(stream.toBuilder().setFormatVersion(2).build()
                .toByteArray()), AS_IS));
        seeds.put("duplicate-section", input(StateCodecTest.envelope(stream.toBuilder()
                .addSections(stream.getSections(0)).build().toByteArray()), AS_IS));
        seeds.put("section-version-0", input(StateCodecTest.envelope(stream.toBuilder()
                .setSections(1, stream.getSections(1).toBuilder().setVersion(0)).build().toByteArray()), AS_IS));
        byte[] newer = valid.clone();
        ByteBuffer.wrap(newer).putInt(8, 2);
        seeds.put("envelope-version-2", input(newer, AS_IS));
        return seeds;
    }

    private static byte[] input(byte[] stream, byte mode) {
        byte[] in = Arrays.copyOf(stream, stream.length + 1);
        in[stream.length] = mode;
        return in;
    }

    @Test
    void decodeSeedsAreCommitted() throws Exception {
        Map<String, byte[]> seeds = decodeSeeds();
        SeedCorpus.check(StateCodecFuzzTest.class, "decodeRefusesOrRestoresWhole", seeds);
        // The seeds start on both sides of the checks: the valid one decodes, a resealed truncated one passes the
        // checksum and is refused by the protobuf parser.
        StateCodec.decode(stream(seeds.get("valid")));
        StateException e = assertThrows(StateException.class,
                () -> StateCodec.decode(StateCodecFuzzTest.reseal(stream(seeds.get("truncated-resealed")))));
        assertFalse(e.getMessage().contains("checksum"), e.getMessage());
    }

    private static byte[] stream(byte[] input) {
        return Arrays.copyOf(input, input.length - 1);
    }
}
