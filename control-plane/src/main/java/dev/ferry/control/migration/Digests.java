package dev.ferry.control.migration;

import com.google.protobuf.ByteString;
import dev.ferry.v1.MemoryDigest;
import io.grpc.Status;
import java.nio.ByteBuffer;

/** ferry.v1.MemoryDigest values of Ferry's page-sum digest (see PageHashes). */
final class Digests {
    private Digests() {}

    static MemoryDigest toProto(long digest, long pages) {
        return MemoryDigest.newBuilder().setAlgorithm(MemoryDigest.Algorithm.XXH3_64_PAGE_SUM)
                .setValue(ByteString.copyFrom(ByteBuffer.allocate(8).putLong(digest).array())).setPageCount(pages).build();
    }

    static long fromProto(MemoryDigest d) {
        if (d.getAlgorithm() != MemoryDigest.Algorithm.XXH3_64_PAGE_SUM || d.getValue().size() != 8) {
            throw Status.INVALID_ARGUMENT.withDescription("memory digest must be XXH3_64_PAGE_SUM with an 8-byte value")
                    .asRuntimeException();
        }
        return d.getValue().asReadOnlyByteBuffer().getLong();
    }
}
