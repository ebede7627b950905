package dev.ferry.dataplane;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.google.protobuf.InvalidProtocolBufferException;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.PageHashes;
import dev.ferry.v1.FerryMetadata;
import dev.ferry.v1.PageBatch;
import dev.ferry.v1.PageRange;
import dev.ferry.v1.PageTransferServiceGrpc;
import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.io.IOException;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;

/**
 * Coverage-guided fuzzing of the destination's page-batch decoder ({@link IncomingBatch.Marshaller}) and
 * {@link PageStreamHandler}'s validation, through a real PageTransferServer on both transports (docs/fuzzing.md).
 *
 * <p>Each input is one StreamPages call of 1 to 3 raw messages. Properties: the call ends OK, INVALID_ARGUMENT or
 * DATA_LOSS, never anything else; guest memory afterwards is what the protobuf reference parse of the first k
 * messages says (k = all of them when the call ended OK, fewer otherwise): a rejected batch writes nothing, an
 * accepted one lands whole, and the hand-written parser never accepts what protobuf reads differently; page hashes
 * stay equal to the memory. Input layout: one byte (low bit: in-process or Netty transport), then the messages as
 * {@link RawBytes#split} reads them. Seeds: {@link PageFuzzSeedsTest}.
 */
class PageBatchFuzzTest {
    static final String TOKEN = "fuzz-session";
    static final int PAGE = 4096;
    /** Two regions of 32 pages: ranges may run off the end or across the boundary. */
    static final long REGION = 32L * PAGE;
    static final Set<Status.Code> ALLOWED = Set.of(Status.Code.OK, Status.Code.INVALID_ARGUMENT, Status.Code.DATA_LOSS);

    /** The request bytes as they are (see {@link RawBytes}). */
    static final MethodDescriptor<byte[], byte[]> RAW = PageTransferServiceGrpc.getStreamPagesMethod()
            .toBuilder(RawBytes.MARSHALLER, RawBytes.MARSHALLER).build();

    private static GuestMemory memory;
    private static PageHashes hashes;
    private static MemoryPageWriter writer;
    private static final Map<Transport, Transport.Endpoint> endpoints = new EnumMap<>(Transport.class);

    private static synchronized void setUp() throws IOException {
        if (memory != null) {
            return;
        }
        memory = GuestMemory.allocate(List.of(new GuestMemory.RegionLayout(0, 0, REGION),
                new GuestMemory.RegionLayout(1, REGION, REGION)));
        TestMemory.fillRandom(memory, 7, 20);
        hashes = new PageHashes(memory);
        hashes.refreshAll();
        writer = new MemoryPageWriter(memory, hashes);
        IncomingPages session = PageTransferErrorsTest.Delegating.acceptingLz4(writer); // LZ4 blocks reach the decompressor
        for (Transport t : Transport.values()) {
            endpoints.put(t, t.start(PageTransferServer.service(token -> Optional.ofNullable(
                    TOKEN.equals(token) ? session : null))));
        }
    }

    @AfterAll
    static synchronized void tearDown() {
        endpoints.values().forEach(Transport.Endpoint::close);
        endpoints.clear();
        if (writer != null) {
            writer.close();
            memory.close();
            memory = null;
        }
    }

    @FuzzTest(maxDuration = "10s")
    void batchesLandWholeOrNotAtAll(byte[] input) throws Exception {
        setUp();
        if (input.length == 0) {
            return;
        }
        Transport transport = (input[0] & 1) == 0 ? Transport.IN_PROCESS : Transport.NETTY;
        List<byte[]> messages = RawBytes.split(input, 1, 3);
        if (messages.isEmpty()) {
            return;
        }

        byte[] before = snapshot();
        Status status = call(endpoints.get(transport), messages);
        assertTrue(ALLOWED.contains(status.getCode()), "StreamPages ended with " + status);
        byte[] after = snapshot();

        // Memory must equal the reference applied to some prefix: all messages if OK, fewer if refused.
        byte[] model = before.clone();
        List<byte[]> prefixes = new ArrayList<>();
        prefixes.add(model.clone());
        int parsed = 0;
        for (byte[] m : messages) {
            if (!applyReference(model, m)) {
                break;
            }
            parsed++;
            prefixes.add(model.clone());
        }
        if (status.isOk()) {
            assertEquals(messages.size(), parsed, "accepted a stream whose message " + parsed
                    + " protobuf cannot apply");
            assertTrue(java.util.Arrays.equals(model, after), "memory differs from the batches the stream carried");
        } else {
            boolean matches = false;
            for (int k = 0; k < Math.min(prefixes.size(), messages.size()) && !matches; k++) {
                matches = java.util.Arrays.equals(prefixes.get(k), after);
            }
            if (!matches) {
                fail("refused (" + status + ") but memory is not the result of the batches before the refused one");
            }
        }
        assertEquals(memory.digest(), hashes.digest(), "page hashes out of step with memory");
    }

    /**
     * Applies one message as protobuf reads it to {@code model}, if it is a batch the destination must accept on its
     * own terms (ranges inside memory, data length matching); false when protobuf cannot parse it or it could not
     * have been accepted. Does not check round/stream order: a refusal for those leaves memory at a prefix anyway.
     */
    private static boolean applyReference(byte[] model, byte[] message) {
        PageBatch b;
        try {
            b = PageBatch.parseFrom(message);
        } catch (InvalidProtocolBufferException e) {
            return false;
        }
        long pages = 0;
        for (PageRange r : b.getPageRunsList()) {
            if (!inside(r)) {
                return false;
            }
            pages += Integer.toUnsignedLong(r.getPageCount());
        }
        for (PageRange r : b.getZeroRangesList()) {
            if (!inside(r)) {
                return false;
            }
        }
        byte[] data;
        switch (b.getDataCodecValue()) {
            case PageWire.CODEC_RAW -> data = b.getData().toByteArray();
            case PageWire.CODEC_LZ4 -> {
                if (pages == 0 || pages > PageStreamHandler.MAX_LZ4_PAGES || b.getData().isEmpty()) {
                    return false;
                }
                data = new byte[(int) pages * PAGE];
                try {
                    byte[] block = b.getData().toByteArray();
                    if (Lz4.DECOMPRESSOR.decompress(block, 0, block.length, data, 0, data.length) != data.length) {
                        return false;
                    }
                } catch (net.jpountz.lz4.LZ4Exception e) {
                    return false;
                }
            }
            default -> {
                return false;
            }
        }
        if (pages * PAGE != data.length) {
            return false;
        }
        int off = 0;
        for (PageRange r : b.getPageRunsList()) {
            int len = r.getPageCount() * PAGE;
            System.arraycopy(data, off, model, (int) r.getGuestPhysicalAddress(), len);
            off += len;
        }
        for (PageRange r : b.getZeroRangesList()) {
            java.util.Arrays.fill(model, (int) r.getGuestPhysicalAddress(),
                    (int) (r.getGuestPhysicalAddress() + (long) r.getPageCount() * PAGE), (byte) 0);
        }
        return true;
    }

    private static boolean inside(PageRange r) {
        long gpa = r.getGuestPhysicalAddress();
        long pages = Integer.toUnsignedLong(r.getPageCount());
        return gpa >= 0 && gpa % PAGE == 0 && pages > 0 && gpa + pages * PAGE <= 2 * REGION && gpa < 2 * REGION;
    }

    private static byte[] snapshot() {
        byte[] out = new byte[(int) memory.totalBytes()];
        for (MemoryRegion r : memory.regions()) {
            r.view().duplicate().clear().get(out, (int) r.guestPhysAddr(), (int) r.size());
        }
        return out;
    }

    /** One StreamPages call carrying {@code messages}, half-closed after the last; its final status. */
    static Status call(Transport.Endpoint endpoint, List<byte[]> messages) throws Exception {
        ClientCall<byte[], byte[]> call = endpoint.channel().newCall(RAW, CallOptions.DEFAULT
                .withDeadlineAfter(60, TimeUnit.SECONDS));
        CompletableFuture<Status> done = new CompletableFuture<>();
        Metadata headers = new Metadata();
        headers.put(FerryMetadata.SESSION_TOKEN, TOKEN);
        call.start(new ClientCall.Listener<>() {
            @Override
            public void onClose(Status status, Metadata trailers) {
                done.complete(status);
            }
        }, headers);
        call.request(Integer.MAX_VALUE);
        for (byte[] m : messages) {
            call.sendMessage(m);
        }
        call.halfClose();
        return done.get(60, TimeUnit.SECONDS);
    }
}
