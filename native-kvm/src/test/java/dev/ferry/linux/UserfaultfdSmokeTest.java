package dev.ferry.linux;

import static dev.ferry.linux.UffdIoctls.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.jna.Memory;
import dev.ferry.kvm.sys.KvmTestSupport;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Postcopy building blocks on a memfd mapping: a thread touching a missing page blocks, the fault
 * is read from the userfaultfd, UFFDIO_COPY fills the page and wakes the thread; racing copies
 * report EEXIST without throwing; zeropage, DONTWAKE + wake, discard + refault, unregister, the
 * /dev/userfaultfd path, and the alias mapping.
 */
class UserfaultfdSmokeTest {
    static final long PAGE = 4096;
    static final int PAGES = 16;

    private FdSnapshot before;
    private MappedMemory mem;
    private Userfaultfd uffd;

    @BeforeEach
    void setUp() {
        KvmTestSupport.assumeUserfaultfd();
        assertEquals(PAGE, LibC.getpagesize());
        before = FdSnapshot.take();
        mem = MappedMemory.createShared("uffd-smoke", PAGES * PAGE);
        uffd = Userfaultfd.open(LibC.O_CLOEXEC | LibC.O_NONBLOCK, UFFD_FEATURE_THREAD_ID);
    }

    @AfterEach
    void tearDown() {
        if (before == null) {
            return;
        }
        uffd.close(); // wakes anything still blocked on a fault, so threads cannot hang the run
        uffd.close();
        mem.close();
        mem.close();
        FdSnapshot after = FdSnapshot.take();
        assertEquals(List.of(), after.leakedSince(before), "fds/mappings left open");
        assertTrue(after.nativeCount() <= before.nativeCount(), "native fds grew: " + after.fds());
    }

    @Test
    void postcopyIsOfferedWhereAMissingPageTrapOpens() {
        // The capability the agent advertises (KvmBackend) must agree with what arming a trap needs, or a
        // postcopy negotiation succeeds and then fails INTERNAL at arming.
        boolean trapOpens;
        try (dev.ferry.memory.GuestMemory m = dev.ferry.memory.GuestMemory.allocate(2 << 20, 1);
                dev.ferry.memory.MissingPageTrap t = dev.ferry.memory.MissingPageTrap.open(m)) {
            trapOpens = true;
        } catch (RuntimeException e) {
            trapOpens = false;
        }
        assertEquals(trapOpens, Userfaultfd.postcopyUnavailableReason().isEmpty(),
                "postcopyUnavailableReason: " + Userfaultfd.postcopyUnavailableReason());
    }

    @Test
    void missingFaultIsResolvedByCopy() throws Exception {
        assertTrue((uffd.features() & UFFD_FEATURE_THREAD_ID) != 0, "features " + Long.toHexString(uffd.features()));
        assertTrue((uffd.features() & UFFD_FEATURE_MISSING_SHMEM) != 0, "shmem missing faults supported");
        long rangeIoctls = uffd.register(mem.address(), mem.size(), UFFDIO_REGISTER_MODE_MISSING);
        assertTrue((rangeIoctls & (1L << _UFFDIO_COPY)) != 0, "UFFDIO_COPY available: " + Long.toHexString(rangeIoctls));
        assertTrue((rangeIoctls & (1L << _UFFDIO_WAKE)) != 0);

        UffdEvent ev = new UffdEvent();
        assertFalse(uffd.readEvent(ev), "no fault yet: non-blocking read returns false");
        assertFalse(uffd.poll(0));

        Toucher toucher = Toucher.read(mem, 8);
        assertTrue(uffd.poll(5000), "fault event within 5 s");
        assertTrue(uffd.readEvent(ev));
        assertTrue(ev.isPagefault(), ev.toString());
        assertEquals(mem.address(), ev.address, "page-aligned fault address");
        assertFalse(ev.isWrite());
        assertEquals(toucher.tid(), ev.ptid, "UFFD_FEATURE_THREAD_ID reports the faulting thread");
        assertTrue(toucher.stillBlockedAfter(150), "the touching thread waits for the page");

        Memory src = pattern(0x0123456789abcdefL);
        assertEquals(PAGE, uffd.copy(mem.address(), Memory.nativeValue(src), PAGE, 0));
        assertEquals(0x0123456789abcdefL + 1, toucher.value(), "toucher sees the copied page");

        // a second copy of the same page loses the race: reported, not thrown
        assertEquals(-Errno.EEXIST, uffd.copy(mem.address(), Memory.nativeValue(src), PAGE, 0));
        assertEquals(-Errno.EEXIST, uffd.zeropage(mem.address(), PAGE, 0));

        // zeropage populates without a fault; reading it never blocks afterwards
        assertEquals(PAGE, uffd.zeropage(mem.address() + PAGE, PAGE, 0));
        assertEquals(0L, Toucher.read(mem, PAGE + 16).value());

        // the alias mapping of the same memfd sees the copied page
        try (MappedMemory alias = mem.alias()) {
            assertNotEquals(mem.address(), alias.address());
            assertEquals(0x0123456789abcdefL + 1, alias.pointer().getLong(8));
            ByteBuffer view = alias.buffer(0, (int) PAGE);
            assertEquals(0x0123456789abcdefL, view.getLong(0));
            // populating through the alias (not registered) makes the page present for everyone
            alias.pointer().setLong(2 * PAGE, 42);
            assertEquals(42L, Toucher.read(mem, 2 * PAGE).value());
        }
        assertFalse(uffd.readEvent(ev), "no stray events");
    }

    @Test
    void dontWakeCopyThenWakeAndDiscardRefaults() throws Exception {
        uffd.register(mem.address(), mem.size(), UFFDIO_REGISTER_MODE_MISSING);
        UffdEvent ev = new UffdEvent();

        long page3 = mem.address() + 3 * PAGE;
        Toucher writer = Toucher.write(mem, 3 * PAGE + 24, 7);
        assertTrue(uffd.poll(5000));
        assertTrue(uffd.readEvent(ev));
        assertEquals(page3, ev.address);
        assertTrue(ev.isWrite(), "a store faults with UFFD_PAGEFAULT_FLAG_WRITE");

        assertEquals(PAGE, uffd.copy(page3, Memory.nativeValue(pattern(100)), PAGE, UFFDIO_COPY_MODE_DONTWAKE));
        assertTrue(writer.stillBlockedAfter(150), "DONTWAKE leaves the faulting thread asleep");
        uffd.wake(page3, PAGE);
        writer.value();
        assertEquals(7L, mem.pointer().getLong(3 * PAGE + 24));
        assertEquals(101L, mem.pointer().getLong(3 * PAGE + 8));

        // MADV_REMOVE punches the page out of the memfd: the next touch faults again
        mem.discard(3 * PAGE, PAGE);
        Toucher again = Toucher.read(mem, 3 * PAGE);
        assertTrue(uffd.poll(5000), "refault after discard");
        UffdEvent[] batch = {new UffdEvent(), new UffdEvent()};
        assertEquals(1, uffd.readEvents(batch));
        assertEquals(page3, batch[0].address);
        assertEquals(PAGE, uffd.zeropage(page3, PAGE, 0));
        assertEquals(0L, again.value());

        // after unregister a missing page is ordinary shmem: zero-filled, no event
        uffd.unregister(mem.address(), mem.size());
        assertEquals(0L, Toucher.read(mem, 9 * PAGE).value());
        assertFalse(uffd.readEvent(ev));

        NativeException bad = assertThrows(NativeException.class, () -> uffd.copy(page3 + 1, Memory.nativeValue(pattern(0)), PAGE, 0));
        assertEquals("UFFDIO_COPY", bad.operation());
        assertEquals(Errno.EINVAL, bad.errno(), "unaligned dst");
    }

    @Test
    void devUserfaultfdPathAndEventFdWakeup() throws Exception {
        if (Files.exists(Path.of(Userfaultfd.DEV_USERFAULTFD))) {
            try (Userfaultfd viaDev = Userfaultfd.openViaDevice(LibC.O_CLOEXEC | LibC.O_NONBLOCK, 0)) {
                assertEquals(uffd.features(), viaDev.features());
                assertTrue(viaDev.fd() >= 0);
                viaDev.register(mem.address(), PAGE, UFFDIO_REGISTER_MODE_MISSING);
                viaDev.unregister(mem.address(), PAGE);
            }
        }
        try (Userfaultfd viaSyscall = Userfaultfd.openViaSyscall(LibC.O_CLOEXEC, 0)) {
            assertTrue((viaSyscall.ioctls() & (1L << _UFFDIO_REGISTER)) != 0);
        }
        NativeException unsupported = assertThrows(NativeException.class,
                () -> Userfaultfd.open(LibC.O_CLOEXEC, 1L << 62));
        assertEquals("UFFDIO_API", unsupported.operation());
        assertEquals(Errno.EINVAL, unsupported.errno());

        try (EventFd stop = EventFd.create()) {
            assertEquals(0, uffd.pollWith(0, stop.fd()));
            stop.signal();
            assertEquals(2, uffd.pollWith(1000, stop.fd()), "the eventfd wakes the poll, uffd not ready");
            assertEquals(1, stop.drain());
            assertEquals(0, stop.drain());
        }
    }

    // ---- helpers ---------------------------------------------------------------------------------

    /** A page whose longs are base, base+1, ... */
    private static Memory pattern(long base) {
        Memory m = new Memory(PAGE);
        for (int i = 0; i < PAGE / 8; i++) {
            m.setLong(8L * i, base + i);
        }
        return m;
    }

    /** A thread that reads (or writes) one long of the mapping, possibly blocking on a fault. */
    private record Toucher(CompletableFuture<Long> result, CompletableFuture<Integer> tidFuture) {
        static Toucher read(MappedMemory mem, long offset) {
            return start(() -> mem.pointer().getLong(offset));
        }

        static Toucher write(MappedMemory mem, long offset, long value) {
            return start(() -> {
                mem.pointer().setLong(offset, value);
                return value;
            });
        }

        private static Toucher start(java.util.function.Supplier<Long> access) {
            CompletableFuture<Long> result = new CompletableFuture<>();
            CompletableFuture<Integer> tid = new CompletableFuture<>();
            Thread t = new Thread(() -> {
                tid.complete(Signals.currentThreadId());
                try {
                    result.complete(access.get());
                } catch (Throwable e) {
                    result.completeExceptionally(e);
                }
            }, "uffd-toucher");
            t.setDaemon(true);
            t.start();
            return new Toucher(result, tid);
        }

        int tid() throws Exception {
            return tidFuture.get(5, TimeUnit.SECONDS);
        }

        boolean stillBlockedAfter(long ms) throws InterruptedException, ExecutionException {
            try {
                result.get(ms, TimeUnit.MILLISECONDS);
                return false;
            } catch (TimeoutException e) {
                return true;
            }
        }

        long value() throws Exception {
            return result.get(5, TimeUnit.SECONDS);
        }
    }
}
