package dev.ferry.dataplane;

import dev.ferry.v1.PageAck;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * One StreamPages call on the destination: validates each batch, writes it into the session's memory, acknowledges
 * rounds. All callbacks run on the call's serialized executor, so the fields need no locking.
 *
 * <p>Flow control: auto-request is disabled; the handler requests {@link #INITIAL_REQUESTS} batches when the call
 * starts and one more after each batch is in memory, so at most that many batches are held on this side and a slow
 * writer pushes back on the source through HTTP/2 flow control.
 *
 * <p>States: OPEN → COMPLETED (source half-closed, everything written) | FAILED (bad input or sink error; the call
 * is closed with that status and later batches are dropped) | CANCELLED (by the source or the transport).
 */
final class PageStreamHandler implements StreamObserver<IncomingBatch> {
    /** Batches requested up front: one being written, one parsed and waiting. */
    static final int INITIAL_REQUESTS = 2;
    /** page_transfer_service.proto: acknowledge at least once per 64 MiB of data between round ends. */
    static final long ACK_EVERY_BYTES = 64L << 20;
    /** An LZ4 batch may decompress to at most 4 MiB (the sender makes 1 MiB), so a tiny block cannot claim gigabytes. */
    static final long MAX_LZ4_PAGES = 1024;

    private enum State { OPEN, COMPLETED, FAILED, CANCELLED }

    private final IncomingPages sink;
    private final MemoryLayout layout;
    private final ServerCallStreamObserver<PageAck> responses;
    private final ByteBuffer scratch = ByteBuffer.allocateDirect(PageWire.PAGE_SIZE);
    private State state = State.OPEN;
    private int streamIndex = -1;
    private int round;          // highest round seen
    private int completedRound; // highest round whose end_of_round batch is written
    private long bytesReceived;
    private long pagesReceived;
    private long bytesSinceAck;

    PageStreamHandler(IncomingPages sink, ServerCallStreamObserver<PageAck> responses) {
        this.sink = sink;
        this.layout = new MemoryLayout(sink.memory());
        this.responses = responses;
    }

    void start() {
        responses.request(INITIAL_REQUESTS);
    }

    @Override
    public void onNext(IncomingBatch batch) {
        try (batch) {
            if (state != State.OPEN) {
                return;
            }
            String invalid = validate(batch);
            if (invalid != null) {
                fail(Status.INVALID_ARGUMENT.withDescription(invalid));
                return;
            }
            try {
                if (batch.codec == PageWire.CODEC_LZ4) {
                    String lost = batch.decompress(rawLength(batch));
                    if (lost != null) {
                        fail(Status.DATA_LOSS.withDescription(lost));
                        return;
                    }
                }
                batch.copyData(sink, layout, scratch);
                for (int i = 0; i < batch.zeroCount; i++) {
                    zero(batch.zeroGpa[i], batch.zeroPages[i]);
                }
            } catch (StatusRuntimeException e) {
                fail(e.getStatus());
                return;
            } catch (IllegalStateException e) {
                fail(Status.FAILED_PRECONDITION.withDescription("session does not accept pages: " + e.getMessage()));
                return;
            } catch (IllegalArgumentException e) {
                fail(Status.INVALID_ARGUMENT.withDescription(e.getMessage()));
                return;
            } catch (IOException | RuntimeException e) {
                fail(Status.INTERNAL.withDescription("writing pages failed: " + e).withCause(e));
                return;
            }
            long dataPages = batch.dataLength / PageWire.PAGE_SIZE;
            long zeroPages = 0;
            for (int i = 0; i < batch.zeroCount; i++) {
                zeroPages += batch.zeroPages[i];
            }
            bytesReceived += batch.dataLength;
            bytesSinceAck += batch.dataLength;
            pagesReceived += dataPages + zeroPages;
            round = batch.round;
            if (batch.endOfRound) {
                completedRound = batch.round;
                ack();
            } else if (bytesSinceAck >= ACK_EVERY_BYTES) {
                ack();
            }
            responses.request(1);
        }
    }

    /** Why the batch is not acceptable, or null; nothing has been written when this runs. */
    private String validate(IncomingBatch b) {
        if (b.error() != null) {
            return b.error();
        }
        if (b.round == 0) {
            return "round must be at least 1, got 0";
        }
        if (b.round < 0) { // uint32 above 2^31 - 1: no migration runs that many rounds
            return "round " + Integer.toUnsignedString(b.round) + " is too large (at most " + Integer.MAX_VALUE + ")";
        }
        if (streamIndex < 0) {
            if (b.streamIndex < 0 || b.streamIndex >= sink.streamCount()) {
                return "stream_index " + Integer.toUnsignedString(b.streamIndex) + " is out of range (session has "
                        + sink.streamCount() + " streams)";
            }
            streamIndex = b.streamIndex;
        } else if (b.streamIndex != streamIndex) {
            return "stream_index changed from " + streamIndex + " to " + Integer.toUnsignedString(b.streamIndex);
        }
        if (b.round < round) {
            return "round went backwards from " + round + " to " + b.round;
        }
        if (b.round <= completedRound) {
            return "round " + b.round + " already ended on this stream";
        }
        long pages = 0;
        for (int i = 0; i < b.runCount; i++) {
            String why = layout.checkRange(b.runGpa[i], b.runPages[i]);
            if (why != null) {
                return "page_runs[" + i + "]: " + why;
            }
            pages += b.runPages[i];
            if (pages > Integer.MAX_VALUE / PageWire.PAGE_SIZE) { // data is at most 2 GiB: no overflow below
                return "page_runs cover more pages than a message can carry";
            }
        }
        if (b.zeroCount > 0 && !sink.acceptsZeroRanges()) {
            return "zero_ranges without the ZERO_PAGE_ELISION feature, which this session did not accept";
        }
        for (int i = 0; i < b.zeroCount; i++) {
            String why = layout.checkRange(b.zeroGpa[i], b.zeroPages[i]);
            if (why != null) {
                return "zero_ranges[" + i + "]: " + why;
            }
        }
        switch (b.codec) {
            case PageWire.CODEC_RAW -> {
                if (pages * PageWire.PAGE_SIZE != b.dataLength) {
                    return "data has " + b.dataLength + " bytes but page_runs cover " + pages + " pages ("
                            + pages * PageWire.PAGE_SIZE + " bytes)";
                }
            }
            case PageWire.CODEC_LZ4 -> {
                if (!sink.acceptsCompressedData()) {
                    return "LZ4 data without the LZ4_PAGE_COMPRESSION feature, which this session did not accept";
                }
                if (pages == 0 || pages > MAX_LZ4_PAGES) {
                    return "LZ4 data must cover 1 to " + MAX_LZ4_PAGES + " pages, page_runs cover " + pages;
                }
                if (b.dataLength == 0) {
                    return "LZ4 data is empty";
                }
            }
            default -> {
                return "data_codec " + Integer.toUnsignedString(b.codec) + " is unknown";
            }
        }
        return null;
    }

    private static int rawLength(IncomingBatch b) {
        long pages = 0;
        for (int i = 0; i < b.runCount; i++) {
            pages += b.runPages[i];
        }
        return (int) (pages * PageWire.PAGE_SIZE); // validated: at most MAX_LZ4_PAGES
    }

    private void zero(long gpa, long pages) {
        while (pages > 0) {
            long n = layout.pagesInRegion(gpa, pages);
            sink.zeroPages(gpa, n);
            gpa += n * PageWire.PAGE_SIZE;
            pages -= n;
        }
    }

    private void ack() {
        bytesSinceAck = 0;
        // Acks are tiny and at most one per round or per 64 MiB received, so they are sent without waiting for
        // isReady(): what can queue up is bounded by what the source has sent.
        responses.onNext(PageAck.newBuilder()
                .setStreamIndex(Math.max(streamIndex, 0))
                .setCompletedRound(completedRound)
                .setBytesReceived(bytesReceived)
                .setPagesReceived(pagesReceived)
                .build());
    }

    private void fail(Status status) {
        state = State.FAILED;
        responses.onError(status.asRuntimeException());
    }

    @Override
    public void onError(Throwable t) {
        if (state == State.OPEN) {
            state = State.CANCELLED;
        }
    }

    @Override
    public void onCompleted() {
        if (state == State.OPEN) {
            state = State.COMPLETED;
            responses.onCompleted();
        }
    }
}
