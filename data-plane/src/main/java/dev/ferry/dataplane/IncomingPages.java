package dev.ferry.dataplane;

import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.PageHashes;
import java.nio.ByteBuffer;

/**
 * Where one incoming migration's pages go. The control plane implements it per migration: for precopy plain
 * memory writes ({@link MemoryPageWriter}), for postcopy later UFFDIO_COPY / UFFDIO_ZEROPAGE.
 *
 * <p>The data plane validates every batch before it calls in here: each call's range is page aligned, inside
 * {@link #memory()} and within one memory region, and {@code data} holds exactly {@code pages * 4096} bytes.
 *
 * <p>Thread-safety: calls come from several data-plane streams at once, for disjoint pages within a round.
 * Failures are reported by throwing: a {@link io.grpc.StatusRuntimeException} ends the stream with its status,
 * {@link IllegalStateException} with FAILED_PRECONDITION (the session does not accept pages now), anything else
 * with INTERNAL.
 */
public interface IncomingPages {
    GuestMemory memory();

    /** The destination's page hashes; the implementation keeps them equal to the hashes of what it wrote. */
    PageHashes hashes();

    /**
     * Writes {@code pages} pages at {@code gpa} from the {@code pages * 4096} bytes of {@code data} starting at its
     * position. {@code data} may be a direct buffer owned by the transport or a heap buffer: read it during the
     * call only, never keep it, and leave its position alone. The hash of each page must be computed from guest
     * memory after the copy, not from {@code data}.
     */
    void writePages(long gpa, int pages, ByteBuffer data);

    /** Makes {@code pages} pages at {@code gpa} all zero and sets their hashes to 0. */
    void zeroPages(long gpa, long pages);

    /**
     * The number of data-plane streams the session accepted (NegotiateMigration's data_stream_count); a batch whose
     * stream_index is not below it fails with INVALID_ARGUMENT. Default: no limit.
     */
    default int streamCount() {
        return Integer.MAX_VALUE;
    }

    /**
     * Whether the session accepted the ZERO_PAGE_ELISION feature; without it a batch with zero_ranges fails with
     * INVALID_ARGUMENT. Default: accepted.
     */
    default boolean acceptsZeroRanges() {
        return true;
    }

    /**
     * Whether the session accepted the LZ4_PAGE_COMPRESSION feature; without it a batch with data_codec LZ4 fails
     * with INVALID_ARGUMENT. Default: not accepted.
     */
    default boolean acceptsCompressedData() {
        return false;
    }
}
