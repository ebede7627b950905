package dev.ferry.process;

import dev.ferry.linux.PagemapScanner;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import java.util.Arrays;
import java.util.Random;

/**
 * Cost of one scan-and-reprotect pass of {@link WriteTracker}, for 1 GiB and 256 MiB of guest
 * memory with 0 %, 1 %, 25 % and 100 % of the pages written at random places (the cost follows the
 * number of 2 MiB page tables holding a written page, so random is the expensive spread). A plain
 * main, not a test: timings depend on the machine. Before each timed pass the dirty pages are
 * written through the registered mapping (not timed: each first write after a pass takes a
 * write-protect fault of about 15 µs, so the 100 % cases spend most of their run writing).
 *
 * <p>Two figures per case: {@code fetchAndClear} (what a migration round pays: the ioctls plus
 * filling a DirtyBitmap) and the bare {@code PagemapScanner} pass. Every pass is also checked to
 * report exactly the pages written. The last column is what the untimed writes cost per page: the
 * first store to a page after a pass takes a write-protect fault.
 *
 * <p>Each case runs twice: with this process otherwise idle, and with a sibling thread spinning on
 * another CPU, as a guest vCPU thread would. Re-protecting pages must then flush that CPU's TLB
 * with an inter-processor interrupt, which an idle process does not pay.
 *
 * <pre>
 * mvn -B -o -q -pl native-kvm -am test-compile
 * mvn -B -o -q -pl native-kvm dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile=/tmp/ferry-cp.txt
 * java -cp native-kvm/target/test-classes:native-kvm/target/classes:state-serializers/target/classes:$(cat /tmp/ferry-cp.txt) \
 *     dev.ferry.process.WriteTrackerBenchmark [warmup runs] [measured runs]
 * </pre>
 */
public final class WriteTrackerBenchmark {
    private static final long MIB = 1 << 20;
    private static final long PAGE = GuestMemory.PAGE_SIZE;

    public static void main(String[] args) {
        int warmup = args.length > 0 ? Integer.parseInt(args[0]) : 3;
        int runs = args.length > 1 ? Integer.parseInt(args[1]) : 11;
        if (warmup < 0 || runs < 1) {
            throw new IllegalArgumentException("usage: WriteTrackerBenchmark [warmup >= 0] [runs >= 1]");
        }
        PagemapScanner.unavailableReason().ifPresent(reason -> {
            throw new IllegalStateException("write tracking cannot run here: " + reason);
        });
        System.out.printf("one scan-and-reprotect pass, %d warm-up + %d measured runs each; %d CPUs%n", warmup, runs,
                Runtime.getRuntime().availableProcessors());
        for (boolean busySibling : new boolean[] {false, true}) {
            Spinner spinner = busySibling ? Spinner.start() : null;
            try {
                System.out.printf("%n%s%n", busySibling ? "with a sibling thread spinning on another CPU (a running guest)"
                        : "process otherwise idle");
                run(warmup, runs);
            } finally {
                if (spinner != null) {
                    spinner.stop();
                }
            }
        }
    }

    private static void run(int warmup, int runs) {
        System.out.printf("%-8s %6s %8s | %-28s | %-28s | %s%n", "memory", "dirty", "pages", "fetchAndClear ms med/min/max",
                "PagemapScanner ms med/min/max", "write µs/page");
        double[] fractions = {0.0, 0.01, 0.25, 1.0};
        for (long size : new long[] {1024 * MIB, 256 * MIB}) {
            try (GuestMemory memory = GuestMemory.allocate(size, 1);
                    WriteTracker tracker = WriteTracker.withOwnUserfaultfd(memory);
                    PagemapScanner scanner = PagemapScanner.open()) {
                MemoryRegion region = memory.regions().get(0);
                touchAll(region); // populate once so the runs measure tracking, not page allocation
                long t0 = System.nanoTime();
                tracker.enable();
                System.out.printf("%-8s enable (arming, all pages populated): %.2f ms%n", label(size), (System.nanoTime() - t0) / 1e6);
                Random rnd = new Random(size);
                for (double fraction : fractions) {
                    int dirty = (int) Math.round(region.pages() * fraction);
                    double[] harvest = new double[runs];
                    double[] scan = new double[runs];
                    long writeNanos = 0;
                    for (int i = -warmup; i < runs; i++) {
                        int[] pages = randomPages(rnd, (int) region.pages(), dirty);
                        long w = System.nanoTime();
                        write(region, pages, i);
                        writeNanos += i >= 0 ? System.nanoTime() - w : 0;
                        long s = System.nanoTime();
                        DirtyBitmap d = tracker.fetchAndClear();
                        long e = System.nanoTime();
                        check(d.count(), dirty, "fetchAndClear");

                        write(region, pages, i);
                        long[] counted = {0};
                        long s2 = System.nanoTime();
                        long reported = scanner.scanWritten(region.mapping().address(), region.mapping().address() + region.size(), true,
                                (start, end, c) -> counted[0] += (end - start) / PAGE);
                        long e2 = System.nanoTime();
                        check(reported, dirty, "PagemapScanner");
                        check(counted[0], dirty, "PagemapScanner regions");
                        if (i >= 0) {
                            harvest[i] = (e - s) / 1e6;
                            scan[i] = (e2 - s2) / 1e6;
                        }
                    }
                    String perPage = dirty == 0 ? "-" : String.format("%.2f", writeNanos / 1e3 / ((double) dirty * runs));
                    System.out.printf("%-8s %5.0f%% %8d | %-28s | %-28s | %s%n", label(size), fraction * 100, dirty, stats(harvest),
                            stats(scan), perPage);
                }
            }
        }
    }

    /** A thread of this process kept running on another CPU, so this mm is live there. */
    private static final class Spinner {
        private final Thread thread;
        private volatile boolean stop;

        private Spinner() {
            thread = new Thread(() -> {
                long n = 0;
                while (!stop) {
                    n++;
                    Thread.onSpinWait();
                }
                if (n == 42) {
                    System.out.print(""); // keeps the loop from being optimized away
                }
            }, "busy-sibling");
            thread.setDaemon(true);
        }

        static Spinner start() {
            Spinner s = new Spinner();
            s.thread.start();
            return s;
        }

        void stop() {
            stop = true;
            try {
                thread.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private static void touchAll(MemoryRegion region) {
        for (long off = 0; off < region.size(); off += PAGE) {
            region.view().putLong((int) off, 1);
        }
    }

    private static void write(MemoryRegion region, int[] pages, int value) {
        for (int p : pages) {
            region.view().putLong((int) (p * PAGE), value);
        }
    }

    /** {@code count} distinct pages out of {@code total}, uniformly at random (partial Fisher-Yates). */
    private static int[] randomPages(Random rnd, int total, int count) {
        int[] all = new int[total];
        for (int i = 0; i < total; i++) {
            all[i] = i;
        }
        for (int i = 0; i < count; i++) {
            int j = i + rnd.nextInt(total - i);
            int t = all[i];
            all[i] = all[j];
            all[j] = t;
        }
        return Arrays.copyOf(all, count);
    }

    private static void check(long got, long expected, String what) {
        if (got != expected) {
            throw new IllegalStateException(what + " reported " + got + " pages, " + expected + " were written");
        }
    }

    private static String stats(double[] ms) {
        double[] s = ms.clone();
        Arrays.sort(s);
        return String.format("%7.2f / %7.2f / %7.2f", s[s.length / 2], s[0], s[s.length - 1]);
    }

    private static String label(long size) {
        return size >= 1024 * MIB ? (size / (1024 * MIB)) + " GiB" : (size / MIB) + " MiB";
    }
}
