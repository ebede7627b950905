package dev.ferry.memory;

import com.sun.jna.Native;
import com.sun.jna.Pointer;
import java.nio.ByteBuffer;
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
 * Fault placement, the kernel half of every postcopy fault and on-demand restore: one UFFDIO_COPY of a 4 KiB page
 * into memfd guest memory registered MISSING (what the pager does once the page arrived), and one UFFDIO_ZEROPAGE
 * (a zero page). The memory is punched out again (MADV_REMOVE) whenever every page was placed, outside the timing.
 * Needs userfaultfd (root); the fault's wire round trip is measured by {@code ferry demo --mode postcopy} instead.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class FaultPlacementBenchmark {
    private static final int PAGE = 4096;
    private static final long MEMORY = 256L << 20; // more pages than one iteration places
    private GuestMemory memory;
    private MissingPageTrap trap;
    private ByteBuffer source;
    private long sourceAddress;
    private long base;
    private long next;

    @Setup(Level.Trial)
    public void setUp() {
        memory = GuestMemory.allocate(MEMORY, 1);
        trap = MissingPageTrap.open(memory);
        source = ByteBuffer.allocateDirect(PAGE);
        for (int i = 0; i < PAGE; i += 8) {
            source.putLong(i, 0x9E3779B97F4A7C15L * (i + 1));
        }
        sourceAddress = Pointer.nativeValue(Native.getDirectBufferPointer(source));
        base = memory.regions().get(0).hostAddress(0);
    }

    /** Every page missing again before each iteration. */
    @Setup(Level.Iteration)
    public void punch() {
        memory.regions().get(0).mapping().discard(0, MEMORY);
        next = 0;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        trap.close();
        memory.close();
    }

    private long nextPage() {
        if (next == MEMORY) { // a very fast machine placed them all: start over (rare, and counted in the time)
            punch();
        }
        long at = base + next;
        next += PAGE;
        return at;
    }

    /** UFFDIO_COPY of one data page. */
    @Benchmark
    public long copyPage() {
        return trap.uffd().copy(nextPage(), sourceAddress, PAGE, 0);
    }

    /** UFFDIO_ZEROPAGE of one zero page. */
    @Benchmark
    public long zeroPage() {
        return trap.uffd().zeropage(nextPage(), PAGE, 0);
    }
}
