package dev.ferry.dataplane;

import net.jpountz.lz4.LZ4Compressor;
import net.jpountz.lz4.LZ4Factory;
import net.jpountz.lz4.LZ4SafeDecompressor;

/**
 * The LZ4 codec of PageBatch.data_codec LZ4: the native library where it loads, else lz4-java's pure-Java one (same
 * format). The destination uses the safe decompressor only: a block from the wire is untrusted input.
 */
final class Lz4 {
    private static final LZ4Factory FACTORY = LZ4Factory.fastestInstance();
    static final LZ4Compressor COMPRESSOR = FACTORY.fastCompressor();
    static final LZ4SafeDecompressor DECOMPRESSOR = FACTORY.safeDecompressor();

    private Lz4() {
    }
}
