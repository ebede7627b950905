package dev.ferry.dataplane;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.PageHashes;
import java.nio.ByteBuffer;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** A destination that stops writing stops the source: what the source hands to gRPC stays bounded. */
class FlowControlTest {
    static final long MEMORY = 128 << 20;
    static final String TOKEN = "flow-token";

    private final GuestMemory src = GuestMemory.allocate(MEMORY, 1);
    private final GuestMemory dst = GuestMemory.allocate(MEMORY, 1);
    private final PageHashes dstHashes = new PageHashes(dst);
    private final MemoryPageWriter writer = new MemoryPageWriter(dst, dstHashes);
    private final ExecutorService executor = Executors.newCachedThreadPool();
    private Transport.Endpoint endpoint;

    @AfterEach
    void tearDown() {
        executor.shutdownNow();
        if (endpoint != null) {
            endpoint.close();
        }
        writer.close();
        src.close();
        dst.close();
    }

    @ParameterizedTest
    @EnumSource(Transport.class)
    void stalledDestinationBoundsWhatTheSourceBuffers(Transport transport) throws Exception {
        CountDownLatch stalled = new CountDownLatch(1);
        CountDownLatch resume = new CountDownLatch(1);
        IncomingPages slow = new PageTransferErrorsTest.Delegating(writer) {
            @Override
            public void writePages(long gpa, int pages, ByteBuffer data) {
                stalled.countDown();
                try {
                    resume.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                super.writePages(gpa, pages, data);
            }
        };
        endpoint = transport.start(PageTransferServer.service(t -> Optional.of(slow).filter(x -> TOKEN.equals(t))));
        TestMemory.fillRandom(src, 9, 0);
        PageHashes srcHashes = new PageHashes(src);
        try (PageSender sender = new PageSender(endpoint.channel(), TOKEN, src, srcHashes, 2,
                BandwidthLimiter.unlimited())) {
            Future<RoundStats> round = executor.submit(() -> sender.sendRound(1, DirtyBitmap.full(src), () -> false));
            assertTrue(stalled.await(10, TimeUnit.SECONDS));
            long before;
            long after = sender.bytesHandedToGrpc();
            do { // wait until the source stops making progress
                before = after;
                Thread.sleep(300);
                after = sender.bytesHandedToGrpc();
            } while (after != before);
            // Per stream: the on-ready threshold (4 MiB) + HTTP/2 windows (~1 MiB each way) + the 2 batches the
            // destination requested + the batch in flight. Far below the 128 MiB round.
            assertTrue(after <= 2 * 12L << 20, "source handed " + (after >> 20) + " MiB to gRPC while stalled");
            assertFalse(round.isDone());
            resume.countDown();
            RoundStats stats = round.get(30, TimeUnit.SECONDS);
            assertEquals(MEMORY / 4096, stats.pagesSent());
        } finally {
            resume.countDown();
        }
        TestMemory.assertSameContent(src, dst);
        assertEquals(src.digest(), dstHashes.digest());
    }
}
