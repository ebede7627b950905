package dev.ferry.dataplane.postcopy;

import com.sun.jna.Native;
import com.sun.jna.Pointer;
import dev.ferry.dataplane.IncomingPages;
import dev.ferry.linux.Errno;
import dev.ferry.linux.EventFd;
import dev.ferry.linux.ThreadPriority;
import dev.ferry.linux.UffdEvent;
import dev.ferry.linux.UffdIoctls;
import dev.ferry.linux.Userfaultfd;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.MissingPageTrap;
import dev.ferry.memory.PageHashes;
import io.grpc.Status;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The destination side of postcopy: resolves the destination VM's missing-page faults through a {@link PageFetcher}
 * and places the pages the source pushes in the background ({@link IncomingPages}, PageBatch.postcopy = true), each
 * page exactly once, with UFFDIO_COPY / UFFDIO_ZEROPAGE (UFFDIO_CONTINUE for pages already in the memfd).
 *
 * <h2>Page states</h2>
 * Every 4 KiB page is MISSING → (FETCHING) → PLACING → PRESENT, under one lock; copies run outside it.
 * <ul>
 *   <li>MISSING: not in guest memory. A fault makes it FETCHING (one fetch); a background page makes it PLACING.</li>
 *   <li>FETCHING: a fetch is in flight (or failed and waits for recovery). Further faults on it only join the waiters
 *       (coalesced, never asked twice). A background page for it is placed at once (PLACING), which also wakes its
 *       faulting threads; the fetch reply that comes later finds the page taken and is dropped.</li>
 *   <li>PLACING: one thread owns the page and is copying it in. Everything else for it is dropped (a race).</li>
 *   <li>PRESENT: in memory. Background pages and late fetch replies for it are dropped (races). A minor fault on a
 *       present page maps it (UFFDIO_CONTINUE); a missing-page fault (read after the copy that woke it, or a hole
 *       among the pages given as present) is answered with UFFDIO_ZEROPAGE, which for a page really present fails
 *       with EEXIST and then only wakes the thread.</li>
 * </ul>
 * The kernel backs this up: a UFFDIO_COPY onto a populated page fails with EEXIST, counted as a race, never placing
 * twice.
 *
 * <h2>Threads</h2>
 * One handler thread ({@link #start()}) polls the userfaultfd together with a stop eventfd, reads faults in batches
 * ({@link Userfaultfd#readEvents}), classifies them under the lock and issues the fetches without waiting for them,
 * so any number of fetches are in flight. The fetch's completion places the page itself (UFFDIO_COPY, which wakes the
 * faulting threads) on whatever thread completed the future, normally the gRPC thread that parsed the reply, so a
 * fault costs no thread hop beyond the transport's. Background pages are placed on the data-plane stream threads
 * that call {@link #writePages} / {@link #zeroPages}.
 *
 * <h2>Recovery</h2>
 * A failed fetch never fails the handler nor the vCPU: the page stays FETCHING, its faulting threads stay blocked in
 * the kernel, the fetch is parked ({@link #stalledFaults()}), and {@link #replaceFetcher} re-requests every parked
 * fetch through the new fetcher (and re-routes fetches still pending on the old one as it closes it).
 *
 * <h2>Arming, admitting, stale pages</h2>
 * The trap registers MINOR as well as MISSING, and the pager drops the guest mapping's page tables when it is armed:
 * from then on every touch of the guest's mapping traps, whether the page is a hole (MISSING) or in the memfd
 * (MINOR). A hybrid's precopy fills memory through {@link GuestMemory#alias()} meanwhile and records each batch
 * ({@link #precopied}); the switchover then only applies the pages dirtied since they were sent ({@link #admit}),
 * without punching anything out (a system call per run, inside the blackout). Such a stale page is fetched like a
 * missing one, written through the pager's own alias and mapped with UFFDIO_CONTINUE (UFFDIO_COPY would find the
 * old bytes and refuse). A present page is mapped with UFFDIO_CONTINUE at once when touched, and every present page
 * is mapped in bulk by a background thread right after {@link #start()}, so the guest rarely waits on one.
 *
 * <h2>Hashes</h2>
 * Each page's hash is computed from exactly the bytes handed to UFFDIO_COPY (the guest may write the page as soon as
 * it is placed, so memory is not read back), and recorded only when the copy placed it; 0 for zero pages.
 *
 * <h2>Guest-memory lifetime</h2>
 * Every copy runs inside a fence; {@link #close()} waits for copies in progress and refuses later ones, stops the
 * handler, unregisters and closes the userfaultfd. Close the pager before unmapping the memory.
 */
public final class PostcopyPager implements IncomingPages, AutoCloseable {
    /** Faults and their resolution, see {@link #stats()}. Latencies: fault read → page in place, in microseconds. */
    public record Stats(long faults, long p50Micros, long p99Micros, long maxMicros, Duration blockedTime,
            long backgroundPages, long races, long coalesced) {}

    private static final byte MISSING = 0;
    private static final byte FETCHING = 1;
    private static final byte PLACING = 2;
    private static final byte PRESENT = 3;

    private static final int PAGE = PagerWire.PAGE_SIZE;
    /** Pages staged per UFFDIO_COPY when the source bytes are on the Java heap. */
    private static final int STAGE_PAGES = 64;
    /** Pages claimed and placed per step of a background write (1 MiB: one data-plane batch). */
    private static final int BACKGROUND_CHUNK = 256;
    private static final ThreadLocal<ByteBuffer> STAGE =
            ThreadLocal.withInitial(() -> ByteBuffer.allocateDirect(STAGE_PAGES * PAGE));
    /** Zeros to copy from where zero pages must be placed write-protected (UFFDIO_ZEROPAGE has no WP mode). */
    private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(BACKGROUND_CHUNK * PAGE);
    private static final long ZEROS_ADDRESS = Pointer.nativeValue(Native.getDirectBufferPointer(ZEROS));

    private final GuestMemory memory;
    private final PageHashes hashes;
    private final RegionTable table;
    private final MissingPageTrap trap;
    private final Userfaultfd uffd;
    private final long copyMode; // UFFDIO_COPY_MODE_WP where the guest's writes are tracked through the same uffd
    private final long continueMode; // UFFDIO_CONTINUE_MODE_WP likewise
    private final GuestMemory alias; // the same memfds, mapped where no trap is: stale pages are rewritten through it
    private final EventFd stop;
    // Pages whose placement must go through the alias (stale bytes, or any bytes, sit in the memfd). Bits are only ever
    // set, under the lock (admit, or a minor fault on a missing page), always before the page can be claimed; a
    // placement reads them after its claim under the lock, so it sees every bit of the pages it owns.
    private final java.util.BitSet cached;
    private final java.util.BitSet inMemfd; // guarded by lock: present pages holding data (not holes)
    private java.util.BitSet toMap; // guarded by lock: present pages for the background mapper, null once taken
    private boolean admitted; // guarded by lock
    private final LongAdder mappedInBulk = new LongAdder();

    private final ReentrantLock lock = new ReentrantLock();
    private final Condition allPresent = lock.newCondition();
    // Guarded by lock.
    private final byte[] state; // every page MISSING until admit()
    private final HashMap<Integer, Pending> pending = new HashMap<>();
    private final java.util.Set<Pending> stalled = new java.util.LinkedHashSet<>();
    private PageFetcher fetcher;
    private long missing;
    private boolean closed;
    private Thread handler;
    private final LatencyHistogram latency = new LatencyHistogram();
    private long faults;
    private long coalesced;
    private long races;
    private long eexist;
    private long backgroundPages;
    private long faultPages;
    private final LongAdder fetchesIssued = new LongAdder();
    private long fetchFailures;
    private long staleFaults;
    private long unmappedTouches;
    private long blockedNanos;
    private Status lastFetchFailure;
    private Throwable lastError;
    private java.util.function.Consumer<Status> failureListener = s -> { };
    private PageFetcher reportedBroken; // the fetcher whose failure was last reported to the listener

    private volatile java.util.function.LongConsumer faultServed = nanos -> { };

    /**
     * Tells {@code listener} how long each vCPU waited (nanoseconds) whenever its missing page is placed; called on
     * the pager's threads, so it must be quick (a metric).
     */
    public void onFaultServed(java.util.function.LongConsumer listener) {
        faultServed = Objects.requireNonNull(listener, "listener");
    }

    /** Fence around every copy into guest memory; see the class comment. */
    private final ReentrantReadWriteLock fence = new ReentrantReadWriteLock();
    private boolean fenceClosed; // written under the write lock

    /**
     * Takes over {@code memory} for postcopy with a trap of its own ({@link MissingPageTrap#open}), as a KVM guest
     * needs; see {@link #PostcopyPager(GuestMemory, MissingPageTrap, PageHashes, DirtyBitmap, PageFetcher)}.
     */
    public PostcopyPager(GuestMemory memory, PageHashes hashes, DirtyBitmap present, PageFetcher fetcher) {
        this(memory, MissingPageTrap.open(memory), hashes, present, fetcher);
    }

    /**
     * Takes over {@code memory} for postcopy: pages set in {@code present} are in place, every other page is missing;
     * pages that hold data in the memfd but are not present are stale (found with SEEK_DATA). Then see {@link #admit}.
     *
     * @param memory  destination guest memory, memfd-backed
     * @param trap    catches the guest's touches of missing pages; owned by the pager from now on (closed by it)
     * @param hashes  the destination's page hashes; updated for every page placed
     * @param present pages already in place (not changed; copied)
     * @param fetcher asks the source for faulted pages; owned by the pager from now on (closed by it)
     */
    public PostcopyPager(GuestMemory memory, MissingPageTrap trap, PageHashes hashes, DirtyBitmap present,
            PageFetcher fetcher) {
        this(memory, trap, hashes, fetcher);
        try {
            DirtyBitmap stale = DirtyBitmap.populated(memory);
            stale.andNot(present);
            admit(present, stale);
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    /**
     * Arms postcopy over {@code memory} before any page is known: the trap is registered and every page counts as
     * missing. Nothing may touch the guest's mappings until {@link #admit} and {@link #start()} (fill memory through
     * {@link GuestMemory#alias()} meanwhile): a touch would block, as nothing answers faults yet.
     */
    public PostcopyPager(GuestMemory memory, MissingPageTrap trap, PageHashes hashes, PageFetcher fetcher) {
        this.memory = Objects.requireNonNull(memory, "memory");
        this.trap = Objects.requireNonNull(trap, "trap");
        this.hashes = Objects.requireNonNull(hashes, "hashes");
        this.fetcher = Objects.requireNonNull(fetcher, "fetcher");
        try {
            this.table = new RegionTable(memory);
            if (table.totalPages > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("guest memory too large for postcopy page tracking");
            }
            for (MemoryRegion r : memory.regions()) {
                if (r.mapping().fd() < 0) {
                    throw new IllegalArgumentException("postcopy needs memfd-backed memory; slot " + r.slot() + " is not");
                }
            }
            state = new byte[(int) table.totalPages];
            cached = new java.util.BitSet(state.length);
            inMemfd = new java.util.BitSet(state.length);
            missing = state.length;
            this.uffd = trap.uffd();
            boolean wp = trap.placeWriteProtected();
            this.copyMode = wp ? UffdIoctls.UFFDIO_COPY_MODE_WP : 0;
            this.continueMode = wp ? UffdIoctls.UFFDIO_CONTINUE_MODE_WP : 0;
            this.stop = EventFd.create();
        } catch (RuntimeException e) {
            trap.close();
            throw e;
        }
        GuestMemory view = null;
        try {
            view = memory.alias();
            // From here on a touch of the guest's mapping traps (the trap is registered) and maps nothing, so once
            // its page tables are gone, nothing is mapped there that this pager did not map.
            for (MemoryRegion r : memory.regions()) {
                r.mapping().dropPageTables(0, r.size());
            }
        } catch (RuntimeException e) {
            if (view != null) {
                view.close();
            }
            stop.close();
            trap.close();
            throw e;
        }
        this.alias = view;
    }

    /**
     * Before {@link #admit}: {@code pages} pages at {@code gpa} were written through {@link GuestMemory#alias()}
     * (precopy, while the pager is armed), with data or as zeros (a hole). They are in place unless admitted as stale.
     * Keeping this as pages land leaves the switchover only the stale pages to apply.
     */
    public void precopied(long gpa, long pages, boolean data) {
        int r = checkRange(gpa, pages);
        int from = (int) table.pageIndex(r, gpa);
        int to = from + (int) pages;
        lock.lock();
        try {
            if (admitted) {
                throw new IllegalStateException("pages were admitted already");
            }
            for (int i = from; i < to; i++) {
                if (state[i] != PRESENT) {
                    state[i] = PRESENT;
                    missing--;
                }
            }
            if (data) {
                inMemfd.set(from, to);
            } else {
                inMemfd.clear(from, to);
            }
        } finally {
            lock.unlock();
        }
    }

    /**
     * Says what is in memory, once, before {@link #start()}: pages in {@code present} are in place (in the memfd, or
     * holes that read as zero); pages in {@code stale} hold bytes in the memfd that must not be seen; every other page
     * is missing (a hole), and pages holding data must be in one of the two sets. See {@link #admit(DirtyBitmap)}.
     */
    public void admit(DirtyBitmap present, DirtyBitmap stale) {
        Objects.requireNonNull(stale, "stale");
        for (dev.ferry.memory.PageRange run : present.ranges()) {
            precopied(run.gpa(), run.pages(), true);
        }
        admit(stale);
    }

    /**
     * The switchover, once, before {@link #start()}: the pages recorded by {@link #precopied} are in place, except
     * those in {@code stale}, which the guest wrote again since they were sent; every other page is missing. Costs a
     * step per stale page and nothing is punched out: the guest's mapping maps nothing since the pager was armed, so
     * every touch traps, and a stale page's old bytes stay in the memfd, unseen, until the new ones replace them.
     */
    public void admit(DirtyBitmap stale) {
        Objects.requireNonNull(stale, "stale");
        lock.lock();
        try {
            if (closed || handler != null || admitted) {
                throw new IllegalStateException(closed ? "postcopy pager closed"
                        : handler != null ? "admit comes before start" : "already admitted");
            }
            toMap = (java.util.BitSet) inMemfd.clone();
            stale.forEachDirtyPage(gpa -> {
                int i = index(gpa);
                if (state[i] == PRESENT) {
                    state[i] = MISSING;
                    missing++;
                }
                cached.set(i); // in the memfd or a hole: placed through the alias either way
                toMap.clear(i);
            });
            admitted = true;
            if (missing == 0) {
                allPresent.signalAll();
            }
        } finally {
            lock.unlock();
        }
    }

    private int index(long gpa) {
        long i = table.pageIndex(gpa);
        if (i < 0) {
            throw new IllegalArgumentException(String.format("0x%x is outside guest memory", gpa));
        }
        return (int) i;
    }

    /** Starts the fault-handler thread. Once only. */
    public void start() {
        lock.lock();
        try {
            if (closed) {
                throw new IllegalStateException("postcopy pager closed");
            }
            if (handler != null) {
                throw new IllegalStateException("already started");
            }
            if (!admitted) {
                throw new IllegalStateException("start comes after admit");
            }
            handler = new Thread(this::runHandler, "ferry-postcopy-faults");
            handler.setDaemon(true);
            handler.start();
            Thread mapper = new Thread(this::mapPresentPages, "ferry-postcopy-map");
            mapper.setDaemon(true);
            mapper.start();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public GuestMemory memory() {
        return memory;
    }

    @Override
    public PageHashes hashes() {
        return hashes;
    }

    // ---- faults -----------------------------------------------------------------------------------------------------

    private void runHandler() {
        ThreadPriority.setCurrent(ThreadPriority.LATENCY_CRITICAL); // a vCPU waits on every fault read here
        UffdEvent[] events = new UffdEvent[Userfaultfd.MAX_BATCH];
        for (int i = 0; i < events.length; i++) {
            events[i] = new UffdEvent();
        }
        List<Pending> toFetch = new ArrayList<>();
        long[] stale = new long[events.length];
        while (true) {
            try {
                int ready = uffd.pollWith(-1, stop.fd());
                if ((ready & 2) != 0) {
                    return;
                }
                if ((ready & 1) == 0) {
                    continue;
                }
                int n = uffd.readEvents(events);
                if (n > 0) {
                    handleFaults(events, n, System.nanoTime(), toFetch, stale);
                }
            } catch (RuntimeException | Error e) {
                // Never let the handler die: the guest would hang on its next fault. Record, back off, go on.
                lock.lock();
                try {
                    lastError = e;
                    if (closed) {
                        return;
                    }
                } finally {
                    lock.unlock();
                }
                try {
                    Thread.sleep(1);
                } catch (InterruptedException ie) {
                    return;
                }
            }
        }
    }

    private void handleFaults(UffdEvent[] events, int n, long now, List<Pending> toFetch, long[] stale) {
        toFetch.clear();
        int staleCount = 0;
        PageFetcher f;
        lock.lock();
        try {
            f = fetcher;
            for (int i = 0; i < n; i++) {
                UffdEvent ev = events[i];
                if (!ev.isPagefault()) {
                    continue;
                }
                long host = ev.address & ~(long) (PAGE - 1);
                int r = table.indexOfHost(host);
                if (r < 0) {
                    continue;
                }
                MemoryRegion region = table.region(r);
                long gpa = region.guestPhysAddr() + (host - region.mapping().address());
                int idx = (int) table.pageIndex(r, gpa);
                boolean minor = (ev.flags & UffdIoctls.UFFD_PAGEFAULT_FLAG_MINOR) != 0;
                switch (state[idx]) {
                    case MISSING -> {
                        if (minor) {
                            cached.set(idx); // in the memfd after all: its placement must go through the alias
                        }
                        state[idx] = FETCHING;
                        Pending p = new Pending(idx, gpa, host);
                        p.addWaiter(now);
                        pending.put(idx, p);
                        toFetch.add(p);
                        faults++;
                    }
                    case FETCHING -> {
                        pending.get(idx).addWaiter(now);
                        faults++;
                        coalesced++;
                    }
                    case PLACING -> {
                        pending.computeIfAbsent(idx, k -> new Pending(k, gpa, host)).addWaiter(now);
                        faults++;
                        coalesced++;
                    }
                    default -> {
                        stale[staleCount++] = minor ? idx | MINOR_FAULT : idx;
                        if (minor) {
                            unmappedTouches++;
                        } else {
                            staleFaults++;
                        }
                    }
                }
            }
        } finally {
            lock.unlock();
        }
        for (Pending p : toFetch) {
            issue(p, f);
        }
        for (int i = 0; i < staleCount; i++) {
            resolvePresent((int) stale[i], (stale[i] & MINOR_FAULT) != 0);
        }
    }

    /** Marks a minor fault in the handler's list of faults on present pages. */
    private static final long MINOR_FAULT = 1L << 32;

    /**
     * A fault on a page already present: a minor fault maps it (it is in the memfd), a hole among the given present
     * pages gets a zero page; if it is mapped already, just wake.
     */
    private void resolvePresent(int idx, boolean minor) {
        long gpa = table.gpaOfIndex(idx);
        long host = table.regionOfGpa(gpa).hostAddress(gpa);
        while (minor) {
            long rc = uffd.continueRange(host, PAGE, continueMode);
            if (rc == PAGE || rc == -Errno.EEXIST) {
                if (rc < 0) {
                    uffd.wake(host, PAGE);
                }
                return;
            }
            if (rc != -Errno.EAGAIN) {
                throw placeFailed("UFFDIO_CONTINUE", rc, gpa);
            }
            Thread.onSpinWait();
        }
        while (true) {
            long rc = placeZeros(host, PAGE);
            if (rc == PAGE) {
                hashes.set(gpa, 0);
                return;
            }
            if (rc == -Errno.EEXIST) {
                uffd.wake(host, PAGE);
                return;
            }
            if (rc != -Errno.EAGAIN) {
                throw placeFailed("UFFDIO_ZEROPAGE", rc, gpa);
            }
            Thread.onSpinWait();
        }
    }

    private void issue(Pending p, PageFetcher f) {
        fetchesIssued.increment(); // not under the lock: background pages hold it, and a vCPU waits here
        CompletableFuture<FetchedPage> cf;
        try {
            cf = f.fetch(p.gpa, 1);
        } catch (RuntimeException e) {
            cf = CompletableFuture.failedFuture(e);
        }
        cf.whenComplete((page, err) -> onFetched(p, f, page, err));
    }

    private void onFetched(Pending p, PageFetcher f, FetchedPage page, Throwable err) {
        if (err == null && (page == null || page.gpa() != p.gpa || page.pages() != 1)) {
            err = new IllegalStateException("fetcher answered " + page + " for the page at 0x" + Long.toHexString(p.gpa));
        }
        if (err != null) {
            fetchFailed(p, f, err);
            return;
        }
        if (!enterFence()) {
            return; // closing: nothing may touch guest memory any more
        }
        try {
            lock.lock();
            try {
                if (state[p.index] != FETCHING || pending.get(p.index) != p) {
                    races++; // a background page (or an earlier reply) placed it first
                    return;
                }
                state[p.index] = PLACING;
            } finally {
                lock.unlock();
            }
            boolean placed;
            try {
                placed = place(p.index, p.host, p.gpa, page.zero() ? null : page.data(),
                        page.zero() ? 0 : page.data().position(), 1, null, 0) == 1;
            } catch (RuntimeException e) {
                // Unexpected userfaultfd failure: keep the faulting threads parked; recovery retries the fetch.
                lock.lock();
                try {
                    lastError = e;
                    state[p.index] = FETCHING;
                    park(p);
                } finally {
                    lock.unlock();
                }
                return;
            }
            long now = System.nanoTime();
            lock.lock();
            try {
                if (placed) {
                    faultPages++;
                } else {
                    races++;
                    eexist++;
                }
                finishPlaced(p.index, now);
            } finally {
                lock.unlock();
            }
        } finally {
            exitFence();
        }
    }

    private void fetchFailed(Pending p, PageFetcher f, Throwable err) {
        PageFetcher retry = null;
        java.util.function.Consumer<Status> listener = null;
        Status lastStatus = Status.fromThrowable(err);
        lock.lock();
        try {
            if (p.done || state[p.index] != FETCHING || pending.get(p.index) != p) {
                return; // resolved meanwhile (background page)
            }
            fetchFailures++;
            lastFetchFailure = lastStatus;
            if (closed) {
                return;
            }
            if (fetcher != f) {
                retry = fetcher; // failed on a fetcher already replaced: go through the new one right away
            } else {
                park(p);
                if (reportedBroken != f) {
                    reportedBroken = f;
                    listener = failureListener;
                }
            }
        } finally {
            lock.unlock();
        }
        if (retry != null) {
            issue(p, retry);
        }
        if (listener != null) {
            try {
                listener.accept(lastStatus);
            } catch (RuntimeException e) {
                // The listener's problem; the pager carries on.
            }
        }
    }

    /**
     * Tells {@code listener} (once per fetcher, on the thread that saw the failure; it must not block) when a fetch
     * through the current fetcher fails and faults start waiting for recovery: the moment for the control plane to
     * report POSTCOPY_PAUSED and call {@link #replaceFetcher} once it has a new connection to the source.
     */
    public void onFetcherFailed(java.util.function.Consumer<Status> listener) {
        Objects.requireNonNull(listener, "listener");
        lock.lock();
        try {
            failureListener = listener;
        } finally {
            lock.unlock();
        }
    }

    /** Parks a fetch until {@link #replaceFetcher}. Under lock. */
    private void park(Pending p) {
        if (!p.stalled) {
            p.stalled = true;
            stalled.add(p);
        }
    }

    /**
     * Recovery: from now on pages are fetched through {@code f}. Every fetch parked after a failure is re-requested
     * through it; fetches still pending on the old fetcher are re-requested as it is closed (which fails them).
     */
    public void replaceFetcher(PageFetcher f) {
        Objects.requireNonNull(f, "fetcher");
        List<Pending> retry = new ArrayList<>();
        PageFetcher old;
        lock.lock();
        try {
            if (closed) {
                f.close();
                throw new IllegalStateException("postcopy pager closed");
            }
            old = fetcher;
            fetcher = f;
            for (Pending p : stalled) {
                p.stalled = false;
                if (!p.done && state[p.index] == FETCHING && pending.get(p.index) == p) {
                    retry.add(p);
                }
            }
            stalled.clear();
        } finally {
            lock.unlock();
        }
        for (Pending p : retry) {
            issue(p, f);
        }
        if (old != f) {
            closeQuietly(old);
        }
    }

    /** Page {@code idx} is in memory now: wake the bookkeeping of its waiters. Under lock. */
    private void finishPlaced(int idx, long now) {
        state[idx] = PRESENT;
        missing--;
        if (!pending.isEmpty()) {
            Pending p = pending.remove(idx);
            if (p != null) {
                p.done = true;
                if (p.stalled) { // parked fetch made moot by a background page
                    p.stalled = false;
                    stalled.remove(p);
                }
                for (int i = 0; i < p.waiters; i++) {
                    long waited = now - p.faultedAt[i];
                    latency.record(TimeUnit.NANOSECONDS.toMicros(waited));
                    faultServed.accept(waited);
                    blockedNanos += Math.max(0, waited);
                }
            }
        }
        if (missing == 0) {
            allPresent.signalAll();
        }
    }

    /**
     * After the start: the missing pages of the range are holes on the source (it never wrote them) and stay holes
     * here. They count as present at once, nothing is placed: a touch gets a zero page from the fault handler without
     * a fetch ({@link #resolvePresent}), and untouched ones never take memory. Pages being fetched or placed are left
     * to that, and pages whose stale bytes sit in the memfd (hybrid) must not be given here: they stay missing.
     */
    public void zeroOnSource(long gpa, long pages) {
        if (pages <= 0) {
            return;
        }
        int r = checkRange(gpa, pages);
        int from = (int) table.pageIndex(r, gpa);
        int to = from + (int) pages;
        for (int chunk = from; chunk < to; chunk += BACKGROUND_CHUNK) { // short lock holds: faults wait on it
            int end = Math.min(to, chunk + BACKGROUND_CHUNK);
            lock.lock();
            try {
                if (closed) {
                    return;
                }
                for (int i = chunk; i < end; i++) {
                    if (state[i] == MISSING && !cached.get(i)) {
                        state[i] = PRESENT;
                        missing--;
                    }
                }
                if (missing == 0) {
                    allPresent.signalAll();
                }
            } finally {
                lock.unlock();
            }
        }
    }

    // ---- background push --------------------------------------------------------------------------------------------

    /**
     * Background push: places each missing page of the {@code pages} pages at {@code gpa} from {@code data} (read
     * during the call only, from its position, which is left unchanged), skipping pages already present or being
     * placed (races). A page whose fault is being fetched is placed from here at once, waking its faulting threads;
     * the fetch reply is then dropped.
     */
    @Override
    public void writePages(long gpa, int pages, ByteBuffer data) {
        if (pages <= 0) {
            return;
        }
        int r = checkRange(gpa, pages);
        if (data.remaining() < (long) pages * PAGE) {
            throw new IllegalArgumentException("data holds " + data.remaining() + " bytes, " + (long) pages * PAGE + " needed");
        }
        background(r, gpa, pages, data);
    }

    /** Background zero range: UFFDIO_ZEROPAGE for each missing page, like {@link #writePages}. Hashes become 0. */
    @Override
    public void zeroPages(long gpa, long pages) {
        if (pages <= 0) {
            return;
        }
        if (pages > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("zero range too large: " + pages);
        }
        int r = checkRange(gpa, pages);
        background(r, gpa, (int) pages, null);
    }

    private int checkRange(long gpa, long pages) {
        int r = table.indexOfGpa(gpa);
        if ((gpa & (PAGE - 1)) != 0 || r < 0 || pages > (table.region(r).endGpa() - gpa) / PAGE) {
            throw new IllegalArgumentException(String.format("page range 0x%x+%d is not within one memory region", gpa, pages));
        }
        return r;
    }

    /**
     * Places the claimable pages of the range: from {@code data}, or zero pages when it is null. In chunks of at most
     * {@link #BACKGROUND_CHUNK} pages, so that a large zero range never holds the lock (and with it fault handling)
     * or the fence (and with it close) for long.
     */
    private void background(int r, long gpa, int pages, ByteBuffer data) {
        for (int off = 0; off < pages; off += BACKGROUND_CHUNK) {
            int n = Math.min(BACKGROUND_CHUNK, pages - off);
            backgroundChunk(r, gpa + (long) off * PAGE, n, data, data == null ? 0 : data.position() + off * PAGE);
        }
    }

    private void backgroundChunk(int r, long gpa, int pages, ByteBuffer data, int dataPos) {
        if (!enterFence()) {
            throw new IllegalStateException("postcopy pager closed: it no longer accepts pages");
        }
        try {
            int idx0 = (int) table.pageIndex(r, gpa);
            byte[] prior = new byte[pages];
            boolean any = false;
            lock.lock();
            try {
                for (int i = 0; i < pages; i++) {
                    byte s = state[idx0 + i];
                    if (s == MISSING || s == FETCHING) {
                        prior[i] = s;
                        state[idx0 + i] = PLACING;
                        any = true;
                    } else {
                        prior[i] = -1;
                        races++;
                    }
                }
            } finally {
                lock.unlock();
            }
            if (!any) {
                return;
            }
            boolean[] placed = new boolean[pages];
            long host0 = table.region(r).hostAddress(gpa);
            try {
                int i = 0;
                while (i < pages) {
                    if (prior[i] < 0) {
                        i++;
                        continue;
                    }
                    int j = i + 1;
                    while (j < pages && prior[j] >= 0) {
                        j++;
                    }
                    place(idx0 + i, host0 + (long) i * PAGE, gpa + (long) i * PAGE, data, dataPos + i * PAGE, j - i,
                            placed, i);
                    i = j;
                }
            } catch (RuntimeException e) {
                undoClaims(idx0, prior, placed);
                throw e;
            }
            long now = System.nanoTime();
            lock.lock();
            try {
                for (int i = 0; i < pages; i++) {
                    if (prior[i] < 0) {
                        continue;
                    }
                    if (placed[i]) {
                        backgroundPages++;
                    } else {
                        races++;
                        eexist++;
                    }
                    finishPlaced(idx0 + i, now);
                }
            } finally {
                lock.unlock();
            }
        } finally {
            exitFence();
        }
    }

    /** After a failed background copy: pages placed are done, the others go back to what they were. */
    private void undoClaims(int idx0, byte[] prior, boolean[] placed) {
        List<Pending> toFetch = new ArrayList<>();
        PageFetcher f;
        long now = System.nanoTime();
        lock.lock();
        try {
            f = fetcher;
            for (int i = 0; i < prior.length; i++) {
                if (prior[i] < 0) {
                    continue;
                }
                int idx = idx0 + i;
                if (placed[i]) {
                    backgroundPages++;
                    finishPlaced(idx, now);
                } else if (prior[i] == FETCHING) {
                    state[idx] = FETCHING;
                } else {
                    Pending p = pending.get(idx);
                    if (p == null) {
                        state[idx] = MISSING;
                    } else { // faulted while we held it: fetch it now
                        state[idx] = FETCHING;
                        toFetch.add(p);
                    }
                }
            }
        } finally {
            lock.unlock();
        }
        for (Pending p : toFetch) {
            issue(p, f);
        }
    }

    // ---- placing ----------------------------------------------------------------------------------------------------

    /**
     * Places {@code pages} claimed pages from page index {@code idx0} on (at {@code host} / {@code gpa}) from
     * {@code src}, or zero pages when it is null: pages with stale bytes in the memfd through the alias and
     * UFFDIO_CONTINUE, the others with UFFDIO_COPY / UFFDIO_ZEROPAGE. Returns the number placed.
     */
    private int place(int idx0, long host, long gpa, ByteBuffer src, int srcPos, int pages, boolean[] placed, int at) {
        int count = 0;
        int i = 0;
        while (i < pages) {
            boolean stale = cached.get(idx0 + i);
            int j = stale ? cached.nextClearBit(idx0 + i) - idx0 : cached.nextSetBit(idx0 + i) - idx0;
            if (j < 0 || j > pages) {
                j = pages;
            }
            long h = host + (long) i * PAGE;
            long g = gpa + (long) i * PAGE;
            if (stale) {
                count += continueRun(h, g, src, srcPos + i * PAGE, j - i, placed, at + i);
            } else if (src == null) {
                count += zeroRun(h, g, j - i, placed, at + i);
            } else {
                count += copyRun(h, g, src, srcPos + i * PAGE, j - i, placed, at + i);
            }
            i = j;
        }
        return count;
    }

    /**
     * Pages whose stale bytes are in the memfd (UFFDIO_COPY would find them there and refuse): writes the new bytes
     * (or zeros) through the alias, where the guest cannot see them, then maps them with UFFDIO_CONTINUE; as
     * {@link #copyRun}.
     */
    private int continueRun(long host, long gpa, ByteBuffer src, int srcPos, int pages, boolean[] placed, int at) {
        MemoryRegion r = alias.regionOf(gpa);
        int off = (int) (gpa - r.guestPhysAddr());
        long[] h = new long[pages];
        if (src == null) {
            for (int done = 0; done < pages; ) {
                int n = Math.min(pages - done, BACKGROUND_CHUNK);
                r.view().put(off + done * PAGE, ZEROS, 0, n * PAGE);
                done += n;
            }
        } else {
            r.view().put(off, src, srcPos, pages * PAGE);
            ByteBuffer page = src.duplicate();
            for (int k = 0; k < pages; k++) {
                page.limit(srcPos + (k + 1) * PAGE).position(srcPos + k * PAGE);
                h[k] = PageHashes.hashPage(page, gpa + (long) k * PAGE);
            }
        }
        int count = 0;
        int k = 0;
        while (k < pages) {
            long rc = uffd.continueRange(host + (long) k * PAGE, (long) (pages - k) * PAGE, continueMode);
            if (rc > 0) {
                int m = (int) (rc / PAGE);
                for (int j = k; j < k + m; j++) {
                    hashes.set(gpa + (long) j * PAGE, h[j]);
                    if (placed != null) {
                        placed[at + j] = true;
                    }
                }
                count += m;
                k += m;
            } else if (rc == -Errno.EEXIST) {
                k++; // mapped already (not by us): leave it, and its hash, alone
            } else if (rc == -Errno.EAGAIN) {
                Thread.onSpinWait();
            } else {
                throw placeFailed("UFFDIO_CONTINUE", rc, gpa + (long) k * PAGE);
            }
        }
        return count;
    }

    /** Pages mapped per UFFDIO_CONTINUE by the background mapper (2 MiB). */
    private static final int MAP_CHUNK = 512;

    /**
     * After the start: maps every present page into the guest's page tables (UFFDIO_CONTINUE, 2 MiB at a time), so
     * that the guest does not take a minor fault on each. Pages it touched first are mapped already (EEXIST: skip);
     * holes among the present pages are not in the memfd (EFAULT: skip, a touch gets a zero page).
     */
    private void mapPresentPages() {
        java.util.BitSet runs;
        lock.lock();
        try {
            runs = toMap;
            toMap = null;
        } finally {
            lock.unlock();
        }
        if (runs == null) {
            return;
        }
        try {
            for (int i = runs.nextSetBit(0); i >= 0; ) {
                long gpa = table.gpaOfIndex(i);
                MemoryRegion region = table.regionOfGpa(gpa);
                int regionEnd = i + (int) ((region.endGpa() - gpa) / PAGE);
                int end = Math.min(Math.min(runs.nextClearBit(i), regionEnd), i + MAP_CHUNK);
                if (!enterFence()) {
                    return;
                }
                try {
                    mapRun(region.hostAddress(gpa), end - i);
                } finally {
                    exitFence();
                }
                i = runs.nextSetBit(end);
            }
        } catch (RuntimeException e) {
            lock.lock();
            try {
                lastError = e; // the guest still gets each page by a minor fault
            } finally {
                lock.unlock();
            }
        }
    }

    /** UFFDIO_CONTINUE over {@code pages} present pages from {@code host}, skipping any mapped already or not in memory. */
    private void mapRun(long host, int pages) {
        long k = 0;
        while (k < pages) {
            long rc = uffd.continueRange(host + k * PAGE, (pages - k) * PAGE, continueMode);
            if (rc > 0) {
                k += rc / PAGE;
                mappedInBulk.add(rc / PAGE);
            } else if (rc == -Errno.EAGAIN) {
                Thread.onSpinWait();
            } else {
                k++; // EEXIST or EFAULT, see above
            }
        }
    }

    /**
     * UFFDIO_COPY of {@code pages} pages from {@code src} (absolute position {@code srcPos}) to {@code host}; records
     * the hash of each page placed (computed from the bytes handed to the kernel) and sets {@code placed[at + i]}.
     * Heap sources are staged in a direct buffer first. Returns the number of pages placed (the rest existed).
     */
    private int copyRun(long host, long gpa, ByteBuffer src, int srcPos, int pages, boolean[] placed, int at) {
        int count = 0;
        long[] h = new long[Math.min(pages, STAGE_PAGES)];
        for (int done = 0; done < pages; ) {
            int n = Math.min(pages - done, STAGE_PAGES);
            ByteBuffer from;
            int fromPos;
            if (src.isDirect()) {
                from = src;
                fromPos = srcPos + done * PAGE;
            } else {
                from = STAGE.get();
                from.put(0, src, srcPos + done * PAGE, n * PAGE);
                fromPos = 0;
            }
            ByteBuffer page = from.duplicate();
            for (int k = 0; k < n; k++) {
                page.limit(fromPos + (k + 1) * PAGE).position(fromPos + k * PAGE);
                h[k] = PageHashes.hashPage(page, gpa + (long) (done + k) * PAGE);
            }
            long srcAddr = Pointer.nativeValue(Native.getDirectBufferPointer(from)) + fromPos;
            int k = 0;
            while (k < n) {
                long rc = uffd.copy(host + (long) (done + k) * PAGE, srcAddr + (long) k * PAGE, (long) (n - k) * PAGE,
                        copyMode);
                if (rc > 0) {
                    int m = (int) (rc / PAGE);
                    for (int j = k; j < k + m; j++) {
                        hashes.set(gpa + (long) (done + j) * PAGE, h[j]);
                        if (placed != null) {
                            placed[at + done + j] = true;
                        }
                    }
                    count += m;
                    k += m;
                } else if (rc == -Errno.EEXIST) {
                    k++; // populated already (not by us): leave it, and its hash, alone
                } else if (rc == -Errno.EAGAIN) {
                    Thread.onSpinWait();
                } else {
                    throw placeFailed("UFFDIO_COPY", rc, gpa + (long) (done + k) * PAGE);
                }
            }
            done += n;
        }
        return count;
    }

    /** UFFDIO_ZEROPAGE of {@code pages} pages at {@code host}; like {@link #copyRun}. */
    private int zeroRun(long host, long gpa, int pages, boolean[] placed, int at) {
        int count = 0;
        int k = 0;
        while (k < pages) {
            long rc = placeZeros(host + (long) k * PAGE, (long) (pages - k) * PAGE);
            if (rc > 0) {
                int m = (int) (rc / PAGE);
                for (int j = k; j < k + m; j++) {
                    hashes.set(gpa + (long) j * PAGE, 0);
                    if (placed != null) {
                        placed[at + j] = true;
                    }
                }
                count += m;
                k += m;
            } else if (rc == -Errno.EEXIST) {
                k++;
            } else if (rc == -Errno.EAGAIN) {
                Thread.onSpinWait();
            } else {
                throw placeFailed("UFFDIO_ZEROPAGE", rc, gpa + (long) k * PAGE);
            }
        }
        return count;
    }

    /**
     * Zero pages at {@code host}: UFFDIO_ZEROPAGE, or where pages must be placed write-protected, UFFDIO_COPY from
     * zeros (at most {@link #BACKGROUND_CHUNK} pages). Returns the bytes placed, or -errno.
     */
    private long placeZeros(long host, long len) {
        if (copyMode == 0) {
            return uffd.zeropage(host, len, 0);
        }
        return uffd.copy(host, ZEROS_ADDRESS, Math.min(len, (long) BACKGROUND_CHUNK * PAGE), copyMode);
    }

    private static IllegalStateException placeFailed(String op, long rc, long gpa) {
        return new IllegalStateException(String.format("%s at guest-physical 0x%x failed: %s", op, gpa,
                Errno.name((int) -rc)));
    }

    // ---- queries ----------------------------------------------------------------------------------------------------

    /** Pages not in place yet. */
    public long missingPages() {
        lock.lock();
        try {
            return missing;
        } finally {
            lock.unlock();
        }
    }

    /** A snapshot of the pages not in place yet (for ResumeIncomingMigration / recovery). */
    public DirtyBitmap missing() {
        byte[] snapshot;
        lock.lock();
        try {
            snapshot = state.clone(); // a copy, so that faults wait for no walk
        } finally {
            lock.unlock();
        }
        DirtyBitmap d = DirtyBitmap.empty(memory);
        for (int i = 0; i < snapshot.length; i++) {
            if (snapshot[i] != PRESENT) {
                d.markDirty(table.gpaOfIndex(i));
            }
        }
        return d;
    }

    /** Waits until every page is in place: true, or false on timeout or when the pager is closed. */
    public boolean awaitAllPresent(Duration timeout) throws InterruptedException {
        long left = timeout.toNanos();
        lock.lock();
        try {
            while (missing > 0 && !closed) {
                if (left <= 0) {
                    return false;
                }
                left = allPresent.awaitNanos(left);
            }
            return missing == 0;
        } finally {
            lock.unlock();
        }
    }

    public Stats stats() {
        lock.lock();
        try {
            return new Stats(faults, latency.percentile(0.50), latency.percentile(0.99), latency.max(),
                    Duration.ofNanos(blockedNanos), backgroundPages, races, coalesced);
        } finally {
            lock.unlock();
        }
    }

    /** Pages with faulting threads waiting for them now. */
    public int pendingFaults() {
        lock.lock();
        try {
            return pending.size();
        } finally {
            lock.unlock();
        }
    }

    /** Fetches parked after a failure, waiting for {@link #replaceFetcher}. */
    public int stalledFaults() {
        lock.lock();
        try {
            return stalled.size();
        } finally {
            lock.unlock();
        }
    }

    /** Fetches issued so far (re-requests after recovery included). */
    public long fetchesIssued() {
        return fetchesIssued.sum();
    }

    /** Fetches that failed so far. */
    public long fetchFailures() {
        return locked(() -> fetchFailures);
    }

    /** Touches of present pages the background mapper had not mapped yet (each mapped at once, nothing fetched). */
    public long unmappedTouches() {
        return locked(() -> unmappedTouches);
    }

    /** Present pages the background mapper mapped into the guest's page tables so far. */
    public long mappedInBulk() {
        return mappedInBulk.sum();
    }

    /** Pages placed from fault replies. */
    public long faultPagesPlaced() {
        return locked(() -> faultPages);
    }

    /** Copies the kernel refused with EEXIST (the page was populated outside this pager); part of {@code races}. */
    public long eexistRaces() {
        return locked(() -> eexist);
    }

    /** Fault events for pages already present (read after the copy that woke them, or holes given as present). */
    public long staleFaults() {
        return locked(() -> staleFaults);
    }

    /** The status of the last failed fetch, or null. */
    public Status lastFetchFailure() {
        lock.lock();
        try {
            return lastFetchFailure;
        } finally {
            lock.unlock();
        }
    }

    /** The last unexpected error of the handler or a copy (they carry on regardless), or null. */
    public Throwable lastError() {
        lock.lock();
        try {
            return lastError;
        } finally {
            lock.unlock();
        }
    }

    private long locked(java.util.function.LongSupplier s) {
        lock.lock();
        try {
            return s.getAsLong();
        } finally {
            lock.unlock();
        }
    }

    // ---- lifetime ---------------------------------------------------------------------------------------------------

    private boolean enterFence() {
        fence.readLock().lock();
        if (fenceClosed) {
            fence.readLock().unlock();
            return false;
        }
        return true;
    }

    private void exitFence() {
        fence.readLock().unlock();
    }

    /**
     * Stops the handler, waits for copies in progress and refuses later ones (background writes then fail with
     * IllegalStateException), unregisters the memory, closes the userfaultfd (threads still blocked on a missing page
     * are woken and see zeros) and the fetcher. Idempotent.
     */
    @Override
    public void close() {
        Thread h;
        PageFetcher f;
        lock.lock();
        try {
            if (closed) {
                return;
            }
            closed = true;
            h = handler;
            f = fetcher;
            stalled.clear();
            allPresent.signalAll();
        } finally {
            lock.unlock();
        }
        if (h != null) {
            stop.signal();
            boolean interrupted = false;
            while (true) {
                try {
                    h.join();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
        fence.writeLock().lock();
        try {
            fenceClosed = true;
        } finally {
            fence.writeLock().unlock();
        }
        trap.close();
        alias.close();
        closeQuietly(f);
        stop.close();
    }

    private static void closeQuietly(PageFetcher f) {
        try {
            f.close();
        } catch (RuntimeException e) {
            // Closing a broken fetcher may fail; it is unusable either way.
        }
    }

    /** The faulting threads of one page, and its fetch. Guarded by the pager's lock. */
    private static final class Pending {
        final int index;
        final long gpa;
        final long host;
        long[] faultedAt = new long[2];
        int waiters;
        boolean stalled;
        boolean done;

        Pending(int index, long gpa, long host) {
            this.index = index;
            this.gpa = gpa;
            this.host = host;
        }

        void addWaiter(long now) {
            if (waiters == faultedAt.length) {
                faultedAt = java.util.Arrays.copyOf(faultedAt, waiters * 2);
            }
            faultedAt[waiters++] = now;
        }
    }
}
