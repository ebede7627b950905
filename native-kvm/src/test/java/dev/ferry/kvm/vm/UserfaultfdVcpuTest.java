package dev.ferry.kvm.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.guest.WorkloadSpec;
import dev.ferry.kvm.sys.KvmTestSupport;
import dev.ferry.linux.Errno;
import dev.ferry.linux.LibC;
import dev.ferry.linux.UffdEvent;
import dev.ferry.linux.UffdIoctls;
import dev.ferry.linux.Userfaultfd;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.state.SectionSet;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.VmConfig;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/**
 * A restored guest whose memory is all missing: every page the vCPU touches blocks it in KVM_RUN
 * until a userfaultfd handler copies the page in (postcopy in miniature, source in-process).
 */
class UserfaultfdVcpuTest {
    static final long MIB = 1 << 20;
    static final Duration T = Duration.ofSeconds(30);

    @Test
    void vcpuBlocksOnMissingPagesAndContinuesOnceTheyAreCopiedIn() throws Exception {
        KvmTestSupport.assumeKvm();
        KvmTestSupport.assumeUserfaultfd();
        VmConfig config = new VmConfig(1, 64 * MIB, 2, WorkloadSpec.of(16 * MIB, 20 * MIB, false));
        try (MicroVm src = MicroVm.create(config, l -> { })) {
            src.start();
            assertTrue(src.probe().orElseThrow().awaitFillDone(T));
            src.pause();
            long savedCounter = src.probe().orElseThrow().guestCounter();
            long savedReports = src.probe().orElseThrow().reportStats().reports();
            SectionSet state = src.saveState();

            try (GuestVm dst = new KvmBackend().createForRestore(state, l -> { });
                    Userfaultfd uffd = Userfaultfd.open(LibC.O_CLOEXEC | LibC.O_NONBLOCK,
                            UffdIoctls.UFFD_FEATURE_MISSING_SHMEM | UffdIoctls.UFFD_FEATURE_THREAD_ID)) {
                for (MemoryRegion r : dst.memory().regions()) {
                    uffd.register(r.mapping().address(), r.size(), UffdIoctls.UFFDIO_REGISTER_MODE_MISSING);
                }
                dst.restoreState(state);

                CountDownLatch firstFault = new CountDownLatch(1);
                CountDownLatch releaseFirst = new CountDownLatch(1);
                AtomicLong firstFaultThread = new AtomicLong();
                AtomicLong served = new AtomicLong();
                AtomicReference<Throwable> handlerError = new AtomicReference<>();
                Thread handler = new Thread(() -> {
                    try {
                        serve(uffd, src.memory(), dst.memory(), firstFault, releaseFirst, firstFaultThread, served);
                    } catch (Throwable t) {
                        handlerError.set(t);
                    }
                }, "uffd-handler");
                handler.setDaemon(true);
                handler.start();

                dst.start();
                assertTrue(firstFault.await(30, TimeUnit.SECONDS), "the vCPU faulted on a missing page");
                // The faulting thread is the vCPU thread, so it is stuck inside KVM_RUN, and the guest
                // has made no progress of its own.
                assertEquals((long) dst.vcpuThreadIds().get(0), firstFaultThread.get());
                assertEquals(savedReports, dst.probe().orElseThrow().reportStats().reports());
                releaseFirst.countDown();

                long since = dst.probe().orElseThrow().reportStats().reports();
                assertTrue(dst.probe().orElseThrow().awaitReports(since, 5, T), "guest runs once pages arrive");
                assertTrue(dst.probe().orElseThrow().guestCounter() > savedCounter, "guest continued from its saved counter");
                assertEquals(0, dst.probe().orElseThrow().selfCheck(T), "every page came through intact");
                assertTrue(served.get() >= config.workload().workingSetPages(),
                        "self-check touched the whole working set: " + served.get() + " pages served");
                dst.pause();
                handler.interrupt();
                handler.join();
                assertNull(handlerError.get());
            }
        }
    }

    /** Resolves faults by copying the page from {@code from}; holds the first one until released. */
    private static void serve(Userfaultfd uffd, GuestMemory from, GuestMemory to, CountDownLatch firstFault,
            CountDownLatch releaseFirst, AtomicLong firstFaultThread, AtomicLong served) throws InterruptedException {
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
                firstFaultThread.set(ev.ptid);
                firstFault.countDown();
                releaseFirst.await();
                first = false;
            }
            long rc = uffd.copy(page, from.regionOf(gpa).hostAddress(gpa), GuestMemory.PAGE_SIZE, 0);
            if (rc == GuestMemory.PAGE_SIZE) {
                served.incrementAndGet();
            } else if (rc != -Errno.EEXIST) {
                throw new IllegalStateException("UFFDIO_COPY returned " + rc);
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
