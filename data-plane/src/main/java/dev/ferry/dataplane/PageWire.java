package dev.ferry.dataplane;

import dev.ferry.memory.GuestMemory;

/** Constants of the PageBatch wire format and of Ferry's batching, in one place. */
final class PageWire {
    static final int PAGE_SIZE = (int) GuestMemory.PAGE_SIZE;
    static final int PAGE_SHIFT = 12;

    /** page_transfer_service.proto: a batch carries at most 1 MiB of data. */
    static final int MAX_DATA_PAGES_PER_BATCH = 256;
    /** Cap on page_runs + zero_ranges entries per batch, so the header stays a few KiB. */
    static final int MAX_RANGES_PER_BATCH = 512;
    /** Cap on all pages (data and zero) per batch, so a mostly-zero round still makes progress in steps of 64 MiB. */
    static final int MAX_PAGES_PER_BATCH = 16384;

    // PageBatch field numbers (page_transfer_service.proto).
    static final int STREAM_INDEX = 1;
    static final int ROUND = 2;
    static final int PAGE_RUNS = 3;
    static final int ZERO_RANGES = 4;
    static final int END_OF_ROUND = 5;
    static final int POSTCOPY = 6;
    static final int DATA_CODEC = 7;
    static final int DATA = 15;
    // PageBatch.DataCodec values.
    static final int CODEC_RAW = 0;
    static final int CODEC_LZ4 = 1;
    // PageRange field numbers (common.proto).
    static final int RANGE_GPA = 1;
    static final int RANGE_PAGE_COUNT = 2;

    static final int WIRETYPE_VARINT = 0;
    static final int WIRETYPE_FIXED64 = 1;
    static final int WIRETYPE_LENGTH_DELIMITED = 2;
    static final int WIRETYPE_START_GROUP = 3;
    static final int WIRETYPE_END_GROUP = 4;
    static final int WIRETYPE_FIXED32 = 5;

    private PageWire() {
    }
}
