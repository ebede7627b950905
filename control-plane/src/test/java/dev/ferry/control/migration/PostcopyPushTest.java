package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.dataplane.PageCursor;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** Push order: every page exactly once, from the latest fault on, skipping what the pager served. */
class PostcopyPushTest {
    static final long MIB = 1 << 20;
    static final long PAGE = GuestMemory.PAGE_SIZE;

    /** Pulls until the cursor is empty; returns the pages in the order handed out. */
    static List<Long> drain(PageCursor cursor) {
        List<Long> order = new ArrayList<>();
        long[] gpa = new long[PageCursor.CHUNK_PAGES];
        int[] pages = new int[PageCursor.CHUNK_PAGES];
        int n;
        while ((n = cursor.next(PageCursor.CHUNK_PAGES, gpa, pages)) > 0) {
            int total = 0;
            for (int i = 0; i < n; i++) {
                total += pages[i];
                for (int p = 0; p < pages[i]; p++) {
                    order.add(gpa[i] + p * PAGE);
                }
            }
            assertTrue(total <= PageCursor.CHUNK_PAGES, "a pull hands out at most what was asked");
        }
        return order;
    }

    @Test
    void everyPageOnceStartingAtTheFaultAndWrappingAround() {
        try (GuestMemory m = GuestMemory.allocate(32 * MIB, 2)) {
            AtomicLong fault = new AtomicLong(20 * MIB + 12345);
            AtomicLong reported = new AtomicLong();
            PostcopyPush push = new PostcopyPush(m, DirtyBitmap.full(m), () -> fault.getAndSet(-1), reported::addAndGet);
            List<Long> order = drain(push);
            assertEquals(20 * MIB + 12288, order.get(0), "the push starts at the faulting page");
            assertEquals(m.totalPages(), order.size());
            assertEquals(m.totalPages(), Set.copyOf(order).size(), "no page twice");
            assertEquals(0, order.get((int) ((32 * MIB - 20 * MIB - 12288) / PAGE)), "after the end it wraps around");
            assertEquals(m.totalPages(), reported.get(), "progress hears of every page");
            assertEquals(m.totalPages(), push.handedOut().count());
            assertEquals(0, push.remainingPages());
        }
    }

    @Test
    void aNewFaultReaimsThePush() {
        try (GuestMemory m = GuestMemory.allocate(16 * MIB, 1)) {
            AtomicLong fault = new AtomicLong(-1);
            PostcopyPush push = new PostcopyPush(m, DirtyBitmap.full(m), () -> fault.getAndSet(-1), n -> { });
            long[] gpa = new long[PageCursor.CHUNK_PAGES];
            int[] pages = new int[PageCursor.CHUNK_PAGES];
            assertEquals(1, push.next(PageCursor.CHUNK_PAGES, gpa, pages));
            assertEquals(0, gpa[0]);
            fault.set(9 * MIB + 100);
            assertEquals(1, push.next(PageCursor.CHUNK_PAGES, gpa, pages));
            assertEquals(9 * MIB, gpa[0]);
            assertEquals(PageCursor.CHUNK_PAGES, pages[0]);
            assertEquals(1, push.next(8, gpa, pages));
            assertEquals(9 * MIB + PageCursor.CHUNK_PAGES * PAGE, gpa[0], "no new fault: it goes on from there");
            assertEquals(8, pages[0]);
        }
    }

    @Test
    void pagesThePagerServedAreNotPushed() {
        try (GuestMemory m = GuestMemory.allocate(4 * MIB, 1)) {
            PostcopyPush push = new PostcopyPush(m, DirtyBitmap.full(m), () -> -1, n -> { });
            push.served(MIB, 3);
            List<Long> order = drain(push);
            assertEquals(m.totalPages() - 3, order.size());
            for (long p = 0; p < 3; p++) {
                assertFalse(order.contains(MIB + p * PAGE));
                assertFalse(push.handedOut().isDirty(MIB + p * PAGE));
            }
        }
    }

    @Test
    void onlyTheGivenPagesAndAHintPastThemWrapsAround() {
        try (GuestMemory m = GuestMemory.allocate(4 * MIB, 1)) {
            DirtyBitmap some = DirtyBitmap.empty(m);
            some.markDirty(4096);
            some.markDirty(8192);
            some.markDirty(5 * 4096);
            PostcopyPush push = new PostcopyPush(m, some, () -> 3 * MIB, n -> { });
            assertEquals(List.of(4096L, 8192L, 5 * 4096L), drain(push));
        }
    }

    @Test
    void streamsPullingAtOnceGetEveryPageOnce() throws Exception {
        try (GuestMemory m = GuestMemory.allocate(64 * MIB, 2)) {
            AtomicLong fault = new AtomicLong(-1);
            AtomicLong reported = new AtomicLong();
            PostcopyPush push = new PostcopyPush(m, DirtyBitmap.full(m), () -> fault.getAndSet(-1), reported::addAndGet);
            Set<Long> seen = ConcurrentHashMap.newKeySet();
            ExecutorService pool = Executors.newFixedThreadPool(4);
            try {
                List<Future<Integer>> pulls = new ArrayList<>();
                for (int t = 0; t < 4; t++) {
                    int stream = t;
                    pulls.add(pool.submit(() -> {
                        int dupes = 0;
                        long[] gpa = new long[PageCursor.CHUNK_PAGES];
                        int[] pages = new int[PageCursor.CHUNK_PAGES];
                        int n;
                        int i = 0;
                        while ((n = push.next(PageCursor.CHUNK_PAGES, gpa, pages)) > 0) {
                            if (stream == 0 && ++i % 7 == 0) {
                                fault.set((i * 7919L % m.totalPages()) * PAGE); // re-aim now and then
                            }
                            for (int k = 0; k < n; k++) {
                                for (int p = 0; p < pages[k]; p++) {
                                    dupes += seen.add(gpa[k] + p * PAGE) ? 0 : 1;
                                }
                            }
                        }
                        return dupes;
                    }));
                }
                for (Future<Integer> f : pulls) {
                    assertEquals(0, f.get());
                }
            } finally {
                pool.shutdownNow();
            }
            assertEquals(m.totalPages(), seen.size());
            assertEquals(m.totalPages(), reported.get());
        }
    }
}
