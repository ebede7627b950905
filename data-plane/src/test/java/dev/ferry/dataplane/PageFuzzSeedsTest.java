package dev.ferry.dataplane;

import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.PageHashes;
import dev.ferry.state.fuzz.SeedCorpus;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The seed corpus of {@link PageBatchFuzzTest}: batches made by the sender's own encoder ({@link OutgoingBatch}) over
 * memory shaped like the fuzz test's, plus a few it must refuse. Keeps the committed files equal to it
 * ({@code -Dferry.fuzz.writeSeeds=true} rewrites them; see {@link SeedCorpus}).
 */
class PageFuzzSeedsTest {
    private static final int PAGE = PageBatchFuzzTest.PAGE;

    static Map<String, byte[]> batchSeeds() throws IOException {
        Map<String, byte[]> seeds = new LinkedHashMap<>();
        try (GuestMemory src = GuestMemory.allocate(List.of(
                new GuestMemory.RegionLayout(0, 0, PageBatchFuzzTest.REGION),
                new GuestMemory.RegionLayout(1, PageBatchFuzzTest.REGION, PageBatchFuzzTest.REGION)))) {
            PageHashes hashes = new PageHashes(src);
            MemoryLayout layout = new MemoryLayout(src);
            SplittableRandom rnd = new SplittableRandom(3);
            for (long p : new long[] {0, 1, 31, 32, 40}) {
                TestMemory.randomPage(src, p * PAGE, rnd);
            }
            // Pages 0-1, and 31-32 across the region boundary (the sender splits that run); zero pages 5-6.
            OutgoingBatch.Builder b = new OutgoingBatch.Builder(layout, hashes, new MemoryFence(), 0, 1);
            for (long p : new long[] {0, 1, 31, 32}) {
                b.addDataPage(p * PAGE);
            }
            b.addZeroPage(5 * PAGE);
            b.addZeroPage(6 * PAGE);
            byte[] round1 = encode(b.build(false));
            OutgoingBatch.Builder end = new OutgoingBatch.Builder(layout, hashes, new MemoryFence(), 0, 1);
            end.addDataPage(40 * PAGE);
            byte[] round1End = encode(end.build(true));
            byte[] zerosOnly = encode(new OutgoingBatch.Builder(layout, hashes, new MemoryFence(), 0, 2).build(true));
            for (long p : new long[] {10, 11, 12}) { // compressible pages: one word in four is data
                for (int w = 0; w < PAGE / 8; w++) {
                    src.putLong(p * PAGE + w * 8L, w % 4 == 0 ? rnd.nextLong() : 0);
                }
            }
            OutgoingBatch.Builder lz4 = new OutgoingBatch.Builder(layout, hashes, new MemoryFence(), 0, 3);
            for (long p : new long[] {10, 11, 12}) {
                lz4.addDataPage(p * PAGE);
            }
            byte[] compressed = encode(lz4.build(true).compressed(Lz4.COMPRESSOR));

            seeds.put("in-process-one-batch", RawBytes.join(new byte[] {0}, List.of(round1)));
            seeds.put("netty-one-batch", RawBytes.join(new byte[] {1}, List.of(round1)));
            seeds.put("netty-round-then-end", RawBytes.join(new byte[] {1}, List.of(round1, round1End, zerosOnly)));
            byte[] cut = java.util.Arrays.copyOf(round1, round1.length - 100);
            seeds.put("in-process-truncated-data", RawBytes.join(new byte[] {0}, List.of(round1End, cut)));
            seeds.put("in-process-empty-message", RawBytes.join(new byte[] {0}, List.of(new byte[0])));
            seeds.put("netty-lz4-batch", RawBytes.join(new byte[] {1}, List.of(round1, compressed)));
            seeds.put("in-process-lz4-batch-cut", RawBytes.join(new byte[] {0},
                    List.of(java.util.Arrays.copyOf(compressed, compressed.length - 5))));
        }
        return seeds;
    }

    private static byte[] encode(OutgoingBatch batch) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (InputStream s = OutgoingBatch.MARSHALLER.stream(batch)) {
            s.transferTo(out);
        }
        return out.toByteArray();
    }

    @Test
    void batchSeedsAreCommitted() throws Exception {
        SeedCorpus.check(PageBatchFuzzTest.class, "batchesLandWholeOrNotAtAll", batchSeeds());
    }
}
