package dev.ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.linux.Errno;
import dev.ferry.linux.UffdEvent;
import dev.ferry.linux.UffdIoctls;
import dev.ferry.linux.Userfaultfd;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.MissingPageTrap;
import dev.ferry.state.SectionSet;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * A restored guest whose memory is all missing: every page a vCPU touches blocks it until a handler
 * places the page through the VM's trap (postcopy in miniature, the source in this process).
 */
class MissingPageTrapTest {
    static final long MIB = 1 << 20;
    static final Duration T = Duration.ofSeconds(30);

    @ParameterizedTest(name = "on {0}")
    @EnumSource(Backend.class)
    void vcpuBlocksOnMissingPagesAndContinuesOnceTheyArePlaced(Backend kind) throws Exception {
        GuestBackend backend = BackendTestSupport.open(kind);
        VmConfig config = new VmConfig(1, 64 * MIB, 2, WorkloadSpec.of(16 * MIB, 20 * MIB, false));
        try (GuestVm src = backend.create(config, l -> { })) {
            src.start();
            GuestProbe srcProbe = src.probe().orElseThrow();
            assertTrue(srcProbe.awaitFillDone(T));
            src.pause();
            long savedCounter = srcProbe.guestCounter();
            long savedReports = srcProbe.reportStats().reports();
            SectionSet state = src.saveState();

            try (GuestVm dst = backend.createForRestore(state, l -> { }); MissingPageTrap trap = dst.trapMissingPages()) {
                dst.restoreState(state); // touches no guest memory
                GuestProbe probe = dst.probe().orElseThrow();
                CountDownLatch firstFault = new CountDownLatch(1);
                CountDownLatch releaseFirst = new CountDownLatch(1);
                AtomicLong served = new AtomicLong();
                AtomicReference<Throwable> handlerError = new AtomicReference<>();
                Thread handler = new Thread(() -> {
                    try {
                        serve(trap, src.memory(), dst.memory(), firstFault, releaseFirst, served);
                    } catch (Throwable t) {
                        handlerError.set(t);
                    }
                }, "uffd-handler");
                handler.setDaemon(true);
                handler.start();

                dst.start();
                assertTrue(firstFault.await(30, TimeUnit.SECONDS), "a vCPU faulted on a missing page");
                assertEquals(savedReports, probe.reportStats().reports(), "the guest waits for its page");
                releaseFirst.countDown();

                long since = probe.reportStats().reports();
                assertTrue(probe.awaitReports(since, 5, T), "guest runs once pages arrive");
                assertTrue(probe.guestCounter() > savedCounter, "guest continued from its saved counter");
                assertEquals(0, probe.selfCheck(T), "every page came through intact");
                assertTrue(served.get() >= config.workload().workingSetPages(),
                        "self-check touched the whole working set: " + served.get() + " pages served");
                dst.pause();
                handler.interrupt();
                handler.join();
                assertNull(handlerError.get());
            }
        }
    }

    /** Places each faulting page from {@code from}; holds the first one until released. */
    private static void serve(MissingPageTrap trap, GuestMemory from, GuestMemory to, CountDownLatch firstFault,
            CountDownLatch releaseFirst, AtomicLong served) throws InterruptedException {
        Userfaultfd uffd = trap.uffd();
        long mode = trap.placeWriteProtected() ? UffdIoctls.UFFDIO_COPY_MODE_WP : 0;
        UffdEvent ev = new UffdEvent();
        boolean first = true;
        while (!Thread.currentThread().isInterrupted()) {
            if (!uffd.poll(100) || !uffd.readEvent(ev) || !ev.isPagefault()) {
                continue;
            }
            long page = ev.address & ~(GuestMemory.PAGE_SIZE - 1);
            MemoryRegion r = regionByHost(to, page);
            long gpa = r.guestPhysAddr() + (page - r.mapping().address());
            if (first) {
                firstFault.countDown();
                releaseFirst.await();
                first = false;
            }
            long rc = uffd.copy(page, from.regionOf(gpa).hostAddress(gpa), GuestMemory.PAGE_SIZE, mode);
            if (rc == GuestMemory.PAGE_SIZE) {
                served.incrementAndGet();
            } else if (rc != -Errno.EEXIST) {
                throw new IllegalStateException("UFFDIO_COPY: " + Errno.name((int) -rc));
            }
        }
    }

    private static MemoryRegion regionByHost(GuestMemory m, long host) {
        for (MemoryRegion r : m.regions()) {
            if (host >= r.mapping().address() && host < r.mapping().address() + r.size()) {
                return r;
            }
        }
        throw new IllegalStateException(String.format("fault at 0x%x outside guest memory", host));
    }
}
