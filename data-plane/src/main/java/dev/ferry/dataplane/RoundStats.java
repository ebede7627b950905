package dev.ferry.dataplane;

/**
 * What one {@link PageSender#sendRound} did, over all streams.
 *
 * @param round     the round number
 * @param pagesSent pages sent with their data (4096 bytes each in {@code PageBatch.data})
 * @param zeroPages pages sent as zero ranges (no data)
 * @param wireBytes serialized PageBatch bytes handed to gRPC (headers and data; without gRPC/HTTP/2 framing)
 * @param nanos     wall time from the start of the call to the last stream's acknowledgement
 * @param compressedPages pages of {@code pagesSent} that went in LZ4 blocks
 * @param compressedBytes bytes of those blocks
 */
public record RoundStats(int round, long pagesSent, long zeroPages, long wireBytes, long nanos, long compressedPages,
        long compressedBytes) {
    public RoundStats {
        if (pagesSent < 0 || zeroPages < 0 || wireBytes < 0 || nanos < 0 || compressedPages < 0 || compressedBytes < 0) {
            throw new IllegalArgumentException("negative count in round stats");
        }
    }

    /** Page bytes sent with data: {@code pagesSent * 4096}. */
    public long dataBytes() {
        return pagesSent * PageWire.PAGE_SIZE;
    }
}
