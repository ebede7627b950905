package dev.ferry.dataplane.postcopy;

import static org.junit.jupiter.api.Assertions.fail;

import com.sun.jna.Pointer;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/** Memory, servers and 'vCPU' threads for the postcopy tests (memfd-backed memory, no /dev/kvm). */
final class PostcopyFixtures {
    static final int PAGE = 4096;
    static final long MIB = 1 << 20;
    static final String TOKEN = "postcopy-test-token";

    private PostcopyFixtures() {
    }

    /** Memory of {@code bytes} in {@code slots} regions: random pages, about {@code zeroPercent}% left all zero. */
    static GuestMemory randomMemory(long bytes, int slots, long seed, int zeroPercent) {
        GuestMemory m = GuestMemory.allocate(bytes, slots);
        SplittableRandom rnd = new SplittableRandom(seed);
        for (long gpa = 0; gpa < m.totalBytes(); gpa += PAGE) {
            if (rnd.nextInt(100) < zeroPercent) {
                continue; // a memfd hole: zero
            }
            ByteBuffer v = m.buffer(gpa, PAGE);
            for (int i = 0; i < PAGE; i += 8) {
                v.putLong(i, rnd.nextLong() | 1);
            }
        }
        return m;
    }

    /** Fresh all-missing memory with the same layout as {@code like}. */
    static GuestMemory emptyLike(GuestMemory like) {
        return GuestMemory.allocate(like.regions().stream()
                .map(r -> new GuestMemory.RegionLayout(r.slot(), r.guestPhysAddr(), r.size()))
                .toList());
    }

    static boolean isZeroPage(GuestMemory m, long gpa) {
        return dev.ferry.memory.PageHashes.isZero(m.buffer(gpa, PAGE));
    }

    static byte[] pageOf(GuestMemory m, long gpa) {
        byte[] b = new byte[PAGE];
        m.buffer(gpa, PAGE).get(b);
        return b;
    }

    /**
     * Reads the page at {@code gpa} of {@code m} the way a vCPU touches guest memory: through the region's mapping, in
     * native code (JNA), so a missing page blocks this thread in the kernel (without holding up JVM safepoints) until
     * the pager places it.
     */
    static byte[] touch(GuestMemory m, long gpa) {
        MemoryRegion r = m.regionOf(gpa);
        Pointer p = r.mapping().pointer();
        long off = gpa - r.guestPhysAddr();
        // First touch with a load done in native code: the thread blocks in the kernel in the 'native' state, as a
        // vCPU would in KVM_RUN. Only then copy the (now present) page out: JNA's array read copies inside the JVM,
        // and a thread blocked there would hold up every safepoint (GC) of the JVM until the page arrives.
        p.getLong(off);
        byte[] b = new byte[PAGE];
        p.read(off, b, 0, PAGE);
        return b;
    }

    /** Page addresses that are all zero / not zero in {@code m}. */
    static long[] pages(GuestMemory m, boolean zero) {
        return java.util.stream.LongStream.iterate(0, g -> g < m.totalBytes(), g -> g + PAGE)
                .filter(g -> isZeroPage(m, g) == zero).toArray();
    }

    /**
     * 'vCPU' threads: each touches its list of pages in order (through {@link #touch}), checks every page against the
     * source, then counts {@link #done} down. Failures are collected.
     */
    static final class Touchers {
        final CountDownLatch done;
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        final List<Thread> threads;

        Touchers(GuestMemory source, GuestMemory dest, List<long[]> perThread) {
            done = new CountDownLatch(perThread.size());
            threads = perThread.stream().map(pages -> {
                Thread t = new Thread(() -> {
                    try {
                        for (long gpa : pages) {
                            byte[] got = touch(dest, gpa);
                            if (!Arrays.equals(pageOf(source, gpa), got)) {
                                throw new AssertionError(String.format("page 0x%x differs from the source", gpa));
                            }
                        }
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    } finally {
                        done.countDown();
                    }
                }, "vcpu-toucher");
                t.setDaemon(true);
                return t;
            }).toList();
        }

        Touchers start() {
            threads.forEach(Thread::start);
            return this;
        }

        void await(long seconds) throws InterruptedException {
            if (!done.await(seconds, TimeUnit.SECONDS)) {
                fail(done.getCount() + " toucher(s) still blocked after " + seconds + " s");
            }
            if (failure.get() != null) {
                throw new AssertionError("a toucher failed", failure.get());
            }
        }
    }

    /** Sessions keyed by token, as the control plane would keep them. */
    static final class Sessions implements PagerSessions {
        final Map<String, PageSource> byToken = new ConcurrentHashMap<>();

        Sessions with(String token, PageSource s) {
            byToken.put(token, s);
            return this;
        }

        @Override
        public Optional<PageSource> byToken(String token) {
            return Optional.ofNullable(byToken.get(token));
        }
    }

    /** Polls {@code condition} every 5 ms for up to {@code millis}; true once it holds. */
    static boolean eventually(long millis, java.util.function.BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(millis);
        while (System.nanoTime() < deadline) {
            if (condition.getAsBoolean()) {
                return true;
            }
            Thread.sleep(5);
        }
        return condition.getAsBoolean();
    }
}
