package dev.ferry.dataplane.postcopy;

import java.nio.ByteBuffer;

/**
 * The answer to one {@link PageFetcher#fetch}: {@code pages} 4 KiB pages at {@code gpa}, either all zero ({@code zero},
 * {@code data} null) or with their {@code pages * 4096} bytes in {@code data} (from its position; the buffer belongs to
 * the receiver).
 */
public record FetchedPage(long gpa, int pages, boolean zero, ByteBuffer data /* null if zero */) {
    public FetchedPage {
        if (zero != (data == null)) {
            throw new IllegalArgumentException("a zero page has no data, a data page has data");
        }
        if (data != null && data.remaining() != (long) pages * PagerWire.PAGE_SIZE) {
            throw new IllegalArgumentException("data holds " + data.remaining() + " bytes for " + pages + " pages");
        }
    }
}
