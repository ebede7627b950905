package dev.ferry.memory;

import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.infra.Blackhole;

/**
 * The dirty-bitmap walks of every precopy round: the page-by-page walk and the run walk the streams are planned
 * from, over 1 GiB of guest memory (262144 pages) with a share of scattered dirty pages.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class DirtyBitmapBenchmark {
    /** Dirty pages per thousand. */
    @Param({"10", "250"})
    public int permille;

    private GuestMemory memory;
    private DirtyBitmap bitmap;

    @Setup(Level.Trial)
    public void setUp() {
        memory = GuestMemory.allocate(1L << 30, 1);
        bitmap = DirtyBitmap.empty(memory);
        SplittableRandom rnd = new SplittableRandom(2);
        for (long p = 0; p < memory.totalPages(); p++) {
            if (rnd.nextInt(1000) < permille) {
                bitmap.markDirty(p * GuestMemory.PAGE_SIZE);
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        memory.close();
    }

    @Benchmark
    public void forEachDirtyPage(Blackhole bh) {
        bitmap.forEachDirtyPage(bh::consume);
    }

    @Benchmark
    public Object ranges() {
        return bitmap.ranges();
    }

    @Benchmark
    public long count() {
        return bitmap.count();
    }
}
