package dev.ferry.dataplane.postcopy;

import com.sun.jna.Pointer;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.PageHashes;
import dev.ferry.linux.Userfaultfd;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import java.net.InetSocketAddress;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * Postcopy fault latency over Netty loopback: one 'vCPU' thread touches distinct missing 4 KiB pages one after the
 * other (each touch blocks until the page is placed), against a PagerServer on its own channel. Reports the latency
 * the toucher saw (touch → return, exact percentiles) and the pager's own figures (fault read → UFFDIO_COPY done).
 *
 * <p>Run (after {@code mvn -o -pl data-plane install}):
 * <pre>
 *   mvn -q -o -pl data-plane dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile=/tmp/dp.cp
 *   java -cp data-plane/target/test-classes:data-plane/target/classes:$(cat /tmp/dp.cp) \
 *       dev.ferry.dataplane.postcopy.FaultLatencyBench [faults] [warmup] [memoryMiB]
 * </pre>
 * Three executor set-ups are measured: gRPC's default executors on both ends (a thread hop per message on each side),
 * a direct executor on the fetcher's call only (GrpcPageFetcher's default), and direct executors on both ends
 * (everything on Netty's event loops; the server built with {@code directExecutor()}).
 */
public final class FaultLatencyBench {
    private static final int PAGE = 4096;

    enum Mode { DEFAULT_EXECUTORS, DIRECT_CLIENT, DIRECT_BOTH }

    public static void main(String[] args) throws Exception {
        int faults = args.length > 0 ? Integer.parseInt(args[0]) : 20_000;
        int warmup = args.length > 1 ? Integer.parseInt(args[1]) : 5_000;
        long mib = args.length > 2 ? Long.parseLong(args[2]) : 256;
        if (!Userfaultfd.available()) {
            System.out.println("skipped: " + Userfaultfd.unavailableReason().orElse("userfaultfd unavailable"));
            return;
        }
        System.out.printf("postcopy fault latency, Netty loopback, 1 toucher thread, 4 KiB faults: %d measured after "
                + "%d warm-up, %d MiB guest, %d CPUs, %s%n", faults, warmup, mib,
                Runtime.getRuntime().availableProcessors(), System.getProperty("java.vm.version"));
        try (GuestMemory source = PostcopyFixtures.randomMemory(mib << 20, (int) Math.max(1, mib / 1024 + 1), 1, 0);
                MemoryPageSource pageSource = new MemoryPageSource(source)) {
            for (Mode mode : Mode.values()) {
                run(mode, source, pageSource, faults, warmup);
            }
        }
    }

    private static void run(Mode mode, GuestMemory source, MemoryPageSource pageSource, int faults, int warmup)
            throws Exception {
        if (faults + warmup > source.totalPages()) {
            throw new IllegalArgumentException("memory too small for " + (faults + warmup) + " distinct faults");
        }
        ExecutorService serverExecutor = Executors.newCachedThreadPool();
        NettyServerBuilder sb = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
                .addService(PagerServer.service(t -> java.util.Optional.of(pageSource)));
        if (mode == Mode.DIRECT_BOTH) {
            sb.directExecutor();
        } else {
            sb.executor(serverExecutor);
        }
        Server server = sb.build().start();
        ManagedChannel channel = dev.ferry.security.TransportSecurity.insecure().channelBuilder("127.0.0.1:" + server.getPort()).build();
        GuestMemory dest = PostcopyFixtures.emptyLike(source);
        try {
            GrpcPageFetcher fetcher = mode == Mode.DEFAULT_EXECUTORS
                    ? new GrpcPageFetcher(channel, PostcopyFixtures.TOKEN, null) // the channel's executor
                    : new GrpcPageFetcher(channel, PostcopyFixtures.TOKEN);      // direct (the default)
            long[] order = shuffledPages(source, 7);
            long[] touch = new long[faults];
            try (PostcopyPager pager = new PostcopyPager(dest, new PageHashes(dest), DirtyBitmap.empty(dest), fetcher)) {
                pager.start();
                for (int i = 0; i < warmup; i++) {
                    touch(dest, order[i]);
                }
                PostcopyPager.Stats before = pager.stats();
                for (int i = 0; i < faults; i++) {
                    long t0 = System.nanoTime();
                    touch(dest, order[warmup + i]);
                    touch[i] = System.nanoTime() - t0;
                }
                PostcopyPager.Stats all = pager.stats();
                for (int i = 0; i < faults; i++) {
                    long gpa = order[warmup + i];
                    if (!source.buffer(gpa, PAGE).equals(dest.buffer(gpa, PAGE))) {
                        throw new AssertionError(String.format("page 0x%x differs", gpa));
                    }
                }
                Arrays.sort(touch);
                System.out.printf("%-18s toucher-seen: p50 %4d us  p99 %5d us  max %6d us  mean %4d us | "
                                + "pager (incl. warm-up, %d faults): p50 %4d us  p99 %5d us  max %6d us%n",
                        mode, micros(touch[faults / 2]), micros(touch[(int) (faults * 0.99)]), micros(touch[faults - 1]),
                        micros(Arrays.stream(touch).sum() / faults), all.faults(), all.p50Micros(), all.p99Micros(),
                        all.maxMicros());
                if (before.faults() != warmup || all.faults() != warmup + faults) {
                    throw new AssertionError("unexpected fault counts " + before + " / " + all);
                }
            }
        } finally {
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
            server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
            serverExecutor.shutdownNow();
            dest.close();
        }
    }

    private static long micros(long nanos) {
        return TimeUnit.NANOSECONDS.toMicros(nanos);
    }

    /** Touches one page in native code: blocks until the pager has placed it. */
    private static void touch(GuestMemory m, long gpa) {
        MemoryRegion r = m.regionOf(gpa);
        Pointer p = r.mapping().pointer();
        p.getLong(gpa - r.guestPhysAddr());
    }

    private static long[] shuffledPages(GuestMemory m, long seed) {
        long[] pages = new long[(int) m.totalPages()];
        for (int i = 0; i < pages.length; i++) {
            pages[i] = (long) i * PAGE;
        }
        SplittableRandom rnd = new SplittableRandom(seed);
        for (int i = pages.length - 1; i > 0; i--) {
            int j = rnd.nextInt(i + 1);
            long t = pages[i];
            pages[i] = pages[j];
            pages[j] = t;
        }
        return pages;
    }
}
