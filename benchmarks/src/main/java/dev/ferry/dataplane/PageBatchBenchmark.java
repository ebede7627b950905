package dev.ferry.dataplane;

import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.PageHashes;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import io.grpc.Drainable;
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
 * The page-batch codec on both sides of a StreamPages call, without the network: the source's encoder (header,
 * pages copied from guest memory and hashed on the way) and the destination's decoder (parse, then pages written
 * into guest memory and hashed). One batch is 256 data pages (1 MiB) in 8 runs of 32, as precopy sends them.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class PageBatchBenchmark {
    private static final int PAGE = 4096;
    private GuestMemory source;
    private GuestMemory destination;
    private PageHashes sourceHashes;
    private MemoryPageWriter writer;
    private MemoryLayout destinationLayout;
    private final java.nio.ByteBuffer scratch = java.nio.ByteBuffer.allocateDirect(PAGE);
    private OutgoingBatch batch;
    private byte[] wire;
    private IncomingBatch.Marshaller decoder;

    /** Discards what it is given, as fast as it can: the encoder's cost alone. */
    private static final OutputStream SINK = new OutputStream() {
        @Override
        public void write(int b) {
        }

        @Override
        public void write(byte[] b, int off, int len) {
        }
    };

    @Setup(Level.Trial)
    public void setUp() throws IOException {
        source = GuestMemory.allocate(16 << 20, 1);
        destination = GuestMemory.allocate(16 << 20, 1);
        SplittableRandom rnd = new SplittableRandom(3);
        for (long off = 0; off < source.totalBytes(); off += 8) {
            source.putLong(off, rnd.nextLong() | 1);
        }
        sourceHashes = new PageHashes(source);
        OutgoingBatch.Builder b = new OutgoingBatch.Builder(new MemoryLayout(source), sourceHashes, new MemoryFence(), 0, 1);
        for (int run = 0; run < 8; run++) {
            for (int p = 0; p < 32; p++) {
                b.addDataPage((long) (run * 64 + p) * PAGE); // runs with gaps between them
            }
        }
        batch = b.build(false);
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        ((Drainable) OutgoingBatch.MARSHALLER.stream(batch)).drainTo(out);
        wire = out.toByteArray();
        writer = new MemoryPageWriter(destination, new PageHashes(destination));
        destinationLayout = new MemoryLayout(destination);
        decoder = new IncomingBatch.Marshaller(new ChunkPool(4), new IncomingBatch.ReceiveStats());
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        writer.close();
        source.close();
        destination.close();
    }

    /** Batches of 1 MiB encoded per second (multiply by 1 MiB for the byte rate). */
    @Benchmark
    public int encode() throws IOException {
        InputStream s = OutgoingBatch.MARSHALLER.stream(batch);
        return ((Drainable) s).drainTo(SINK);
    }

    /** Batches of 1 MiB decoded and written into guest memory per second. */
    @Benchmark
    public long decodeAndWrite() throws IOException {
        try (IncomingBatch in = decoder.parse(new ByteArrayInputStream(wire))) {
            if (in.error() != null) {
                throw new IllegalStateException(in.error().toString());
            }
            in.copyData(writer, destinationLayout, scratch);
            return in.dataLength;
        }
    }
}
