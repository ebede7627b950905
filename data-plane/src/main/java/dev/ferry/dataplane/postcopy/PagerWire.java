package dev.ferry.dataplane.postcopy;

/** Constants of the PageFaultRequest / PageFaultReply wire format (postcopy_pager_service.proto), in one place. */
final class PagerWire {
    static final int PAGE_SIZE = 4096;
    static final int PAGE_SHIFT = 12;
    static final long SIZE_4K = 4096;
    static final long SIZE_2M = 2L << 20;
    static final long SIZE_1G = 1L << 30;
    /** A 1 GiB fault is answered in pieces of at most this many bytes. */
    static final int MAX_PIECE = 2 << 20;

    // PageFaultRequest / PageFaultReply field numbers.
    static final int FAULT_ID = 1;
    static final int GPA = 2;
    static final int LENGTH = 3; // request
    static final int ZERO = 3;   // reply
    static final int LAST = 4;   // reply
    static final int DATA = 15;  // reply

    static final int WIRETYPE_VARINT = 0;
    static final int WIRETYPE_FIXED64 = 1;
    static final int WIRETYPE_LENGTH_DELIMITED = 2;
    static final int WIRETYPE_FIXED32 = 5;

    private PagerWire() {
    }

    /** True for the page sizes a fault may cover: 4 KiB, 2 MiB, 1 GiB. */
    static boolean validLength(long length) {
        return length == SIZE_4K || length == SIZE_2M || length == SIZE_1G;
    }
}
