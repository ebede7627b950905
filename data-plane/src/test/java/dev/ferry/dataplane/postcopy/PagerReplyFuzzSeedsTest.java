package dev.ferry.dataplane.postcopy;

import com.google.protobuf.ByteString;
import dev.ferry.dataplane.RawBytes;
import dev.ferry.state.fuzz.SeedCorpus;
import dev.ferry.v1.PageFaultReply;
import java.io.IOException;
import java.io.InputStream;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The seed corpus of {@link PagerReplyFuzzTest}: replies to fault 1 at {@link PagerReplyFuzzTest#GPA} as the source's
 * encoder ({@link OutgoingReply}) and the generated code write them, plus a few the fetcher must refuse. Keeps the
 * committed files equal to it ({@code -Dferry.fuzz.writeSeeds=true} rewrites them; see {@link SeedCorpus}).
 */
class PagerReplyFuzzSeedsTest {
    static Map<String, byte[]> replySeeds() throws IOException {
        byte[] zero;
        try (InputStream s = OutgoingReply.MARSHALLER.stream(OutgoingReply.zero(1, PagerReplyFuzzTest.GPA))) {
            zero = s.readAllBytes();
        }
        byte[] page = new byte[PagerWire.PAGE_SIZE];
        for (int i = 0; i < page.length; i++) {
            page[i] = (byte) (i * 7 + 1);
        }
        PageFaultReply data = PageFaultReply.newBuilder().setFaultId(1).setGuestPhysicalAddress(PagerReplyFuzzTest.GPA)
                .setLast(true).setData(ByteString.copyFrom(page)).build();
        Map<String, byte[]> seeds = new LinkedHashMap<>();
        seeds.put("zero-page", RawBytes.join(new byte[0], List.of(zero)));
        seeds.put("data-page", RawBytes.join(new byte[0], List.of(data.toByteArray())));
        seeds.put("unknown-fault-id", RawBytes.join(new byte[0], List.of(data.toBuilder().setFaultId(9).build()
                .toByteArray())));
        seeds.put("half-page-not-last", RawBytes.join(new byte[0], List.of(data.toBuilder().setLast(false)
                .setData(ByteString.copyFrom(page, 0, 2048)).build().toByteArray())));
        seeds.put("zero-then-data", RawBytes.join(new byte[0], List.of(zero, data.toByteArray())));
        return seeds;
    }

    @Test
    void replySeedsAreCommitted() throws Exception {
        SeedCorpus.check(PagerReplyFuzzTest.class, "repliesYieldThePageOrAStatus", replySeeds());
    }
}
