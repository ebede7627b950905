package dev.ferry.dataplane.postcopy;

import java.util.concurrent.CompletableFuture;

/**
 * The destination's way to ask the source for missing pages. {@link GrpcPageFetcher} is the implementation over
 * PostcopyPagerService/StreamPageFaults; {@link PostcopyPager} uses one at a time and swaps it on recovery.
 */
public interface PageFetcher extends AutoCloseable {
    /**
     * Asks for the {@code pages} 4 KiB pages at {@code gpa} (one backing page: 1 for 4 KiB memory, 512 for 2 MiB,
     * 262144 for 1 GiB; {@code gpa} aligned to it). Never blocks. The future completes with the page, or exceptionally
     * (a {@link io.grpc.StatusRuntimeException} carrying the status) when the fetch cannot be answered, e.g. because
     * the connection broke; it is up to the caller to retry through another fetcher. The future may be completed on
     * a transport thread: dependent actions should be quick.
     */
    CompletableFuture<FetchedPage> fetch(long gpa, int pages);

    /** Stops: pending fetches fail (CANCELLED), later ones fail at once. Idempotent; does not throw. */
    @Override
    void close();
}
