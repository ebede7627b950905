package dev.ferry.memory;

import java.nio.ByteBuffer;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Per-page work every sent and received page pays: its hash (the digest and verification are sums of these), the
 * zero-page test behind zero-page elision, and the memory digest at switchover.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class PageHashBenchmark {
    private static final int PAGE = 4096;
    private GuestMemory memory;
    private PageHashes hashes;
    private ByteBuffer data;
    private ByteBuffer zero;
    private byte[] heapPage;

    @Setup(Level.Trial)
    public void setUp() {
        memory = GuestMemory.allocate(64 << 20, 1);
        SplittableRandom rnd = new SplittableRandom(1);
        for (long off = 0; off < memory.totalBytes(); off += 8) {
            memory.putLong(off, rnd.nextLong());
        }
        hashes = new PageHashes(memory);
        hashes.refreshAll();
        data = memory.buffer(PAGE, PAGE);
        heapPage = new byte[PAGE];
        data.duplicate().get(heapPage);
        zero = ByteBuffer.allocateDirect(PAGE);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        memory.close();
    }

    /** XXH3 of one 4 KiB page (a data page, sent or received), from native memory: libxxhash where installed. */
    @Benchmark
    public long hashPage() {
        return PageHashes.hashPage(data, PAGE);
    }

    /** The same hash by the Java implementation, the fallback where libxxhash is missing. */
    @Benchmark
    public long hashPageJava() {
        return PageHashes.javaHash(heapPage, 0, PAGE);
    }

    /** The zero test on a zero page (it must read all 4 KiB). */
    @Benchmark
    public boolean isZeroOnAZeroPage() {
        return PageHashes.isZero(zero);
    }

    /** The zero test on a data page (it stops at the first non-zero word). */
    @Benchmark
    public boolean isZeroOnADataPage() {
        return PageHashes.isZero(data);
    }

    /** The switchover digest of 64 MiB of page hashes (16384 pages). */
    @Benchmark
    @OutputTimeUnit(TimeUnit.MICROSECONDS)
    public long digestOf64MiB() {
        return hashes.digest();
    }
}
