package dev.ferry.dataplane;

/** How a {@link PageSender} compresses its batches (MigrationPolicy.page_compression, once negotiated). */
public enum PageCompression {
    /** Raw pages only: the destination did not accept LZ4_PAGE_COMPRESSION, or the policy said OFF. */
    OFF,
    /** Each stream compresses while it pays ({@link CompressionGovernor}). */
    AUTO,
    /** Every batch with data is compressed (sent raw when its block would not be smaller). */
    ALWAYS
}
