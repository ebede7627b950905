package dev.ferry.memory;

import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;

/**
 * XXH3-64 from the system's xxHash library ({@code libxxhash.so.0}, Debian's libxxhash0, which apt itself depends
 * on), for page hashes in native memory: its runtime-dispatched SSE2/AVX2 code hashes a 4 KiB page in about
 * 0.3 µs against 0.7 µs for the Java implementation under C2 and 1.7 µs under C1, which agents run. It computes
 * the same function ({@code XXH3_64bits_withSeed}), so either end may use either; {@link PageHashes} falls back to
 * Java where the library is missing. Direct-mapped: no allocation per call. Heap arrays are not passed (JNA
 * would copy the whole array on every call).
 */
final class NativeXxh3 {
    private static final Throwable LOAD_FAILURE;

    static {
        Throwable failure = null;
        try {
            Native.register(NativeXxh3.class, NativeLibrary.getInstance("xxhash"));
        } catch (UnsatisfiedLinkError | RuntimeException e) {
            failure = e;
        }
        LOAD_FAILURE = failure;
    }

    private NativeXxh3() {}

    /** {@code XXH64_hash_t XXH3_64bits_withSeed(const void *input, size_t length, XXH64_hash_t seed)}. */
    static native long XXH3_64bits_withSeed(long input, long length, long seed);

    static boolean isLoaded() {
        return LOAD_FAILURE == null;
    }

    /** Why the library did not load, or null. */
    static String loadFailure() {
        return LOAD_FAILURE == null ? null : String.valueOf(LOAD_FAILURE.getMessage());
    }
}
