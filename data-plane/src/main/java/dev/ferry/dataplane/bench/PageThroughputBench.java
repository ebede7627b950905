package dev.ferry.dataplane.bench;

import dev.ferry.dataplane.BandwidthLimiter;
import dev.ferry.dataplane.MemoryPageWriter;
import dev.ferry.dataplane.PageSender;
import dev.ferry.dataplane.PageTransferServer;
import dev.ferry.dataplane.RoundStats;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.PageHashes;
import io.grpc.ManagedChannel;
import dev.ferry.security.TransportSecurity;
import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * Streams a guest memory (1 GiB by default, mostly non-zero) from a {@link PageSender} to a
 * {@link PageTransferServer} over Netty on loopback, in one JVM, with 1, 2 and 4 streams, and prints MiB/s per round.
 * Not a unit test: run it by hand, or through {@code ferry bench}, which also measures iperf3 on loopback in the
 * same run for comparison.
 *
 * <pre>
 * java -cp ... dev.ferry.dataplane.bench.PageThroughputBench [--mib=1024] [--streams=1,2,4] [--rounds=3]
 *     [--zero-percent=3] [--window-kib=0] [--slots=1]
 * </pre>
 * Each configuration runs one warm-up round (not counted) and then {@code rounds} measured full rounds; every round
 * is acknowledged by the destination, so the figure is "landed in destination memory", hashes included on both
 * sides. The destination's memory digest is checked against the source's at the end.
 */
public final class PageThroughputBench {
    private PageThroughputBench() {
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> opt = new HashMap<>();
        for (String a : args) {
            if (!a.startsWith("--") || !a.contains("=")) {
                throw new IllegalArgumentException("arguments are --name=value, got " + a);
            }
            opt.put(a.substring(2, a.indexOf('=')), a.substring(a.indexOf('=') + 1));
        }
        long mib = Long.parseLong(opt.getOrDefault("mib", "1024"));
        int[] streamCounts = Arrays.stream(opt.getOrDefault("streams", "1,2,4").split(","))
                .mapToInt(Integer::parseInt).toArray();
        int rounds = Integer.parseInt(opt.getOrDefault("rounds", "3"));
        int zeroPercent = Integer.parseInt(opt.getOrDefault("zero-percent", "3"));
        int windowKib = Integer.parseInt(opt.getOrDefault("window-kib", "0"));
        long bytes = mib << 20;
        int slots = Integer.parseInt(opt.getOrDefault("slots", String.valueOf(Math.max(1, (int) ((bytes + (1L << 30) - 1) >> 30)))));

        System.out.printf("PageThroughputBench: %d MiB guest memory (%d slot(s)), %d%% zero pages, %d measured rounds per "
                + "configuration, server flow-control window %s, %d CPUs, %s%n", mib, slots, zeroPercent, rounds,
                windowKib == 0 ? "gRPC default" : windowKib + " KiB", Runtime.getRuntime().availableProcessors(),
                System.getProperty("java.vm.name") + " " + System.getProperty("java.version"));

        try (GuestMemory src = GuestMemory.allocate(bytes, slots);
                GuestMemory dst = GuestMemory.allocate(bytes, slots)) {
            long t0 = System.nanoTime();
            long zeros = fill(src, zeroPercent);
            System.out.printf("filled source in %.1f s (%d zero pages of %d)%n", (System.nanoTime() - t0) / 1e9, zeros,
                    src.totalPages());
            PageHashes dstHashes = new PageHashes(dst);
            MemoryPageWriter writer = new MemoryPageWriter(dst, dstHashes);
            String token = "bench-token";
            NettyServerBuilder sb = TransportSecurity.insecure().serverBuilder(new InetSocketAddress("127.0.0.1", 0));
            if (windowKib > 0) {
                sb.flowControlWindow(windowKib << 10);
            }
            Server server = PageTransferServer.start(sb, t -> token.equals(t) ? Optional.of(writer) : Optional.empty());
            ManagedChannel channel = TransportSecurity.insecure().channelBuilder("127.0.0.1:" + server.getPort()).build();
            List<String> summary = new ArrayList<>();
            try {
                for (int streams : streamCounts) {
                    PageHashes srcHashes = new PageHashes(src);
                    double[] mibPerSec = new double[rounds];
                    try (PageSender sender = new PageSender(channel, token, src, srcHashes, streams,
                            BandwidthLimiter.unlimited())) {
                        RoundStats warm = sender.sendRound(1, DirtyBitmap.full(src), () -> false);
                        System.out.printf("streams=%d warm-up: %.0f MiB/s%n", streams, rate(warm));
                        for (int r = 0; r < rounds; r++) {
                            RoundStats s = sender.sendRound(r + 2, DirtyBitmap.full(src), () -> false);
                            mibPerSec[r] = rate(s);
                            System.out.printf("streams=%d round %d: %d data pages + %d zero pages, %.1f MiB on the "
                                    + "wire in %.3f s = %.0f MiB/s%n", streams, r + 1, s.pagesSent(), s.zeroPages(),
                                    s.wireBytes() / 1048576.0, s.nanos() / 1e9, mibPerSec[r]);
                        }
                    }
                    if (srcHashes.digest() != dstHashes.digest() || dst.digest() != src.digest()) {
                        throw new AssertionError("digest mismatch after streams=" + streams);
                    }
                    double[] sorted = mibPerSec.clone();
                    Arrays.sort(sorted);
                    summary.add(String.format("streams=%d: median %.0f MiB/s (%.2f GiB/s), best %.0f MiB/s",
                            streams, sorted[sorted.length / 2], sorted[sorted.length / 2] / 1024,
                            sorted[sorted.length - 1]));
                }
            } finally {
                channel.shutdownNow();
                server.shutdownNow();
                channel.awaitTermination(5, TimeUnit.SECONDS);
                server.awaitTermination(5, TimeUnit.SECONDS);
                writer.close();
            }
            System.out.println("digests equal on both sides after every configuration");
            System.out.println("summary (page data bytes landed in destination memory per second):");
            summary.forEach(s -> System.out.println("  " + s));
        }
    }

    /** Median and best page-data MiB/s of {@code rounds} full rounds after one warm-up round. */
    public record Result(long mib, int streams, double medianMibPerSecond, double bestMibPerSecond, boolean digestsEqual) {}

    /**
     * Streams {@code mib} MiB of mostly non-zero memory (3% zero pages) over Netty on loopback with
     * {@code streams} streams, each on its own connection: one warm-up round, then {@code rounds} measured ones.
     */
    public static Result measure(long mib, int streams, int rounds) throws Exception {
        return measure(mib, streams, rounds, TransportSecurity.insecure(), TransportSecurity.insecure());
    }

    /**
     * As above, the destination listening with {@code server}'s transport (and its role table) and the
     * source dialling with {@code client}'s: mutual TLS on both, or plaintext on both.
     */
    public static Result measure(long mib, int streams, int rounds, TransportSecurity server, TransportSecurity client)
            throws Exception {
        long bytes = mib << 20;
        int slots = Math.max(1, (int) ((bytes + (1L << 30) - 1) >> 30));
        try (GuestMemory src = GuestMemory.allocate(bytes, slots); GuestMemory dst = GuestMemory.allocate(bytes, slots)) {
            fill(src, 3);
            return measure(src, dst, streams, rounds, server, client);
        }
    }

    /** Streams {@code src} into {@code dst} (same size), whatever they held before. */
    public static Result measure(GuestMemory src, GuestMemory dst, int streams, int rounds, TransportSecurity serverSecurity,
            TransportSecurity client) throws Exception {
        long mib = src.totalBytes() >> 20;
        {
            PageHashes dstHashes = new PageHashes(dst);
            MemoryPageWriter writer = new MemoryPageWriter(dst, dstHashes);
            Server server = PageTransferServer.start(serverSecurity.serverBuilder(new InetSocketAddress("127.0.0.1", 0))
                    .flowControlWindow(32 << 20).intercept(serverSecurity.authorization()),
                    t -> "bench".equals(t) ? Optional.of(writer) : Optional.empty());
            // One connection per stream, as migrations open them (an HTTP/2 connection is one event-loop thread).
            List<ManagedChannel> connections = new ArrayList<>();
            for (int i = 0; i < streams; i++) {
                connections.add(client.channelBuilder("127.0.0.1:" + server.getPort()).flowControlWindow(16 << 20).build());
            }
            double[] rates = new double[rounds];
            PageHashes srcHashes = new PageHashes(src);
            try (PageSender sender = new PageSender(connections, "bench", src, srcHashes, streams,
                    BandwidthLimiter.unlimited(), PageSender.Options.DEFAULT)) {
                sender.sendRound(1, DirtyBitmap.full(src), () -> false);
                for (int r = 0; r < rounds; r++) {
                    rates[r] = rate(sender.sendRound(r + 2, DirtyBitmap.full(src), () -> false));
                }
            } finally {
                connections.forEach(ManagedChannel::shutdownNow);
                server.shutdownNow();
                for (ManagedChannel c : connections) {
                    c.awaitTermination(5, TimeUnit.SECONDS);
                }
                server.awaitTermination(5, TimeUnit.SECONDS);
                writer.close();
            }
            Arrays.sort(rates);
            return new Result(mib, streams, rates[rates.length / 2], rates[rates.length - 1],
                    srcHashes.digest() == dstHashes.digest() && src.digest() == dst.digest());
        }
    }

    /** Page data MiB per second of a round (zero pages and headers not counted). */
    static double rate(RoundStats s) {
        return s.dataBytes() / 1048576.0 / (s.nanos() / 1e9);
    }

    /** Pseudo-random non-zero content (xorshift, fast) with about {@code zeroPercent}% of pages left zero. */
    public static long fill(GuestMemory memory, int zeroPercent) {
        long x = 0x9E3779B97F4A7C15L;
        long zeros = 0;
        for (MemoryRegion r : memory.regions()) {
            ByteBuffer v = r.view();
            for (int off = 0; off < r.size(); off += 4096) {
                x ^= x << 13;
                x ^= x >>> 7;
                x ^= x << 17;
                if (Long.remainderUnsigned(x, 100) < zeroPercent) {
                    zeros++;
                    continue;
                }
                for (int i = 0; i < 4096; i += 8) {
                    x ^= x << 13;
                    x ^= x >>> 7;
                    x ^= x << 17;
                    v.putLong(off + i, x | 1);
                }
            }
        }
        return zeros;
    }
}
