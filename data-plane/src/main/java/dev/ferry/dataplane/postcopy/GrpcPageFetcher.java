package dev.ferry.dataplane.postcopy;

import dev.ferry.v1.FerryMetadata;
import dev.ferry.v1.PageFaultRequest;
import dev.ferry.v1.PostcopyPagerServiceGrpc;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.protobuf.ProtoUtils;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.LongAdder;

/**
 * A {@link PageFetcher} over one PostcopyPagerService/StreamPageFaults call, opened by the constructor and kept open
 * until {@link #close()} or until it breaks.
 *
 * <p>Pipelined: {@link #fetch} sends a request at once, without waiting for earlier replies, under a fault_id of its
 * own; replies are matched to requests by fault_id, in whatever order they come. The pieces of a 1 GiB page are
 * assembled in order. The future is completed in the same callback that parsed the reply (by default on the
 * transport's own thread), so a consumer that places the page in a {@code whenComplete} does so without another
 * thread hop.
 *
 * <p>Flow control: replies are requested {@link #INITIAL_REPLIES} ahead and one more after each reply has been handed
 * on (its future completed, and so its dependent actions run), so a slow consumer slows the source instead of
 * buffering. Requests are a few bytes each and bounded by the faults outstanding, so they are sent without waiting
 * for {@code isReady()}.
 *
 * <p>Failure: when the stream breaks (any close by the source, transport failure, a malformed or unexpected reply,
 * {@link #close()}), every pending future fails with a {@link io.grpc.StatusRuntimeException} of that status, and so
 * does every later fetch. The fetcher never reconnects: the caller decides (postcopy: pause and recover through a new
 * fetcher).
 *
 * <p>Thread-safe.
 */
public final class GrpcPageFetcher implements PageFetcher {
    static final MethodDescriptor<PageFaultRequest, IncomingReply> METHOD = PostcopyPagerServiceGrpc
            .getStreamPageFaultsMethod()
            .toBuilder(ProtoUtils.marshaller(PageFaultRequest.getDefaultInstance()), IncomingReply.MARSHALLER)
            .build();

    /** Replies requested ahead of consumption. */
    static final int INITIAL_REPLIES = 32;

    private final ClientCall<PageFaultRequest, IncomingReply> call;
    /** ClientCall is not thread-safe (except request()): sendMessage, halfClose and cancel go through this. */
    private final Object callLock = new Object();
    private final Object lock = new Object();
    // Guarded by lock.
    private final HashMap<Long, Pending> pending = new HashMap<>();
    private long nextId = 1;
    private Status failure;
    private final LongAdder requestsSent = new LongAdder();

    /**
     * Opens the stream on {@code pagerChannel}. Replies are parsed and futures completed directly on the transport's
     * thread (a direct call executor): that saves a thread hop per fault (measured on loopback: see
     * FaultLatencyBench), and {@link PostcopyPager}'s dependent action, one UFFDIO_COPY, is short and never blocks.
     */
    public GrpcPageFetcher(Channel pagerChannel, String sessionToken) {
        this(pagerChannel, sessionToken, Runnable::run);
    }

    /**
     * Opens the stream; replies are parsed and futures completed on {@code callbackExecutor} (null: the channel's
     * executor; use one when dependent actions may block).
     */
    public GrpcPageFetcher(Channel pagerChannel, String sessionToken, Executor callbackExecutor) {
        Objects.requireNonNull(pagerChannel, "pagerChannel");
        Objects.requireNonNull(sessionToken, "sessionToken");
        CallOptions options = CallOptions.DEFAULT;
        if (callbackExecutor != null) {
            options = options.withExecutor(callbackExecutor);
        }
        call = pagerChannel.newCall(METHOD, options);
        Metadata headers = new Metadata();
        headers.put(FerryMetadata.SESSION_TOKEN, sessionToken);
        synchronized (callLock) {
            call.start(new Listener(), headers);
            call.request(INITIAL_REPLIES);
        }
    }

    @Override
    public CompletableFuture<FetchedPage> fetch(long gpa, int pages) {
        long length = (long) pages * PagerWire.PAGE_SIZE;
        if (!PagerWire.validLength(length)) {
            throw new IllegalArgumentException("a fault covers 1, 512 or 262144 pages, not " + pages);
        }
        if (gpa < 0 || (gpa & (length - 1)) != 0) {
            throw new IllegalArgumentException(String.format("gpa 0x%x is not aligned to %d bytes", gpa, length));
        }
        Pending p = new Pending(gpa, pages);
        long id;
        synchronized (lock) {
            if (failure != null) {
                return CompletableFuture.failedFuture(failure.asRuntimeException());
            }
            id = nextId++;
            pending.put(id, p);
        }
        PageFaultRequest req = PageFaultRequest.newBuilder()
                .setFaultId(id)
                .setGuestPhysicalAddress(gpa)
                .setLengthBytes(length)
                .build();
        try {
            synchronized (callLock) {
                call.sendMessage(req);
            }
            requestsSent.increment();
        } catch (RuntimeException e) {
            // The call was cancelled concurrently (close or a failure): that path fails the pending futures; make sure
            // this one is among them.
            Status s;
            synchronized (lock) {
                pending.remove(id);
                s = failure != null ? failure : Status.INTERNAL.withDescription("sending the fault failed: " + e);
            }
            p.future.completeExceptionally(s.asRuntimeException());
        }
        return p.future;
    }

    /** Why the stream is broken, or null while it works. */
    public Status failure() {
        synchronized (lock) {
            return failure;
        }
    }

    /** Fetches sent and not answered yet. */
    public int pendingFetches() {
        synchronized (lock) {
            return pending.size();
        }
    }

    /** Requests sent on the stream so far. */
    public long requestsSent() {
        return requestsSent.sum();
    }

    /**
     * Ends the stream: half-closes it when nothing is pending (the source completes it OK), cancels it otherwise;
     * pending and later fetches fail with CANCELLED. Idempotent.
     */
    @Override
    public void close() {
        boolean idle;
        synchronized (lock) {
            idle = pending.isEmpty() && failure == null;
        }
        failAll(Status.CANCELLED.withDescription("page fetcher closed"));
        synchronized (callLock) {
            try {
                if (idle) {
                    call.halfClose();
                } else {
                    call.cancel("page fetcher closed", null);
                }
            } catch (IllegalStateException e) {
                // Already half-closed or cancelled.
            }
        }
    }

    /** Marks the stream broken with {@code status} (the first one wins) and fails every pending future. */
    private void failAll(Status status) {
        List<Pending> failed;
        Status s;
        synchronized (lock) {
            if (failure == null) {
                failure = status;
            }
            s = failure;
            failed = new ArrayList<>(pending.values());
            pending.clear();
        }
        for (Pending p : failed) {
            p.future.completeExceptionally(s.asRuntimeException());
        }
    }

    /** A protocol violation by the source: fails everything and cancels the call. */
    private void abort(Status status) {
        failAll(status);
        synchronized (callLock) {
            call.cancel(status.getDescription(), null);
        }
    }

    private final class Listener extends ClientCall.Listener<IncomingReply> {
        @Override
        public void onMessage(IncomingReply r) {
            if (r.error != null) {
                abort(Status.INTERNAL.withDescription(r.error));
                return;
            }
            Pending p;
            Object outcome;
            synchronized (lock) {
                if (failure != null) {
                    return; // already failed: nothing pending any more
                }
                p = pending.get(r.faultId);
                if (p == null) {
                    outcome = "reply for fault_id " + Long.toUnsignedString(r.faultId) + ", which is not pending";
                } else {
                    outcome = p.accept(r);
                    if (outcome instanceof FetchedPage) {
                        pending.remove(r.faultId);
                    }
                }
            }
            if (outcome instanceof String why) {
                abort(Status.INTERNAL.withDescription("bad PageFaultReply: " + why));
                return;
            }
            if (outcome instanceof FetchedPage page) {
                p.future.complete(page);
            }
            call.request(1);
        }

        @Override
        public void onClose(Status status, Metadata trailers) {
            failAll(status.isOk()
                    ? Status.UNAVAILABLE.withDescription("the source ended the page-fault stream")
                    : status);
        }
    }

    /** One fetch in flight; for a 1 GiB page, the pieces received so far. Guarded by the fetcher's lock. */
    private static final class Pending {
        final long gpa;
        final int pages;
        final CompletableFuture<FetchedPage> future = new CompletableFuture<>();
        private byte[] assembly;
        private int received;

        Pending(long gpa, int pages) {
            this.gpa = gpa;
            this.pages = pages;
        }

        /** The complete page, null while pieces are missing, or why {@code r} is not acceptable (a String). */
        Object accept(IncomingReply r) {
            long total = (long) pages * PagerWire.PAGE_SIZE;
            if (r.zero) {
                if (received != 0 || !r.last || r.data != null) {
                    return "a zero reply must be the only reply of its fault, marked last, without data";
                }
                return new FetchedPage(gpa, pages, true, null);
            }
            int n = r.data == null ? 0 : r.data.length;
            if (r.gpa != gpa + received) {
                return String.format("reply at 0x%x, expected 0x%x", r.gpa, gpa + received);
            }
            if (n == 0 || received + n > total || (n & (PagerWire.PAGE_SIZE - 1)) != 0) {
                return "reply carries " + n + " bytes at offset " + received + " of a " + total + "-byte page";
            }
            if (total <= PagerWire.MAX_PIECE) {
                if (!r.last || n != total) {
                    return "a page of " + total + " bytes must come in one reply marked last";
                }
                return new FetchedPage(gpa, pages, false, ByteBuffer.wrap(r.data));
            }
            if (assembly == null) {
                assembly = new byte[(int) total];
            }
            System.arraycopy(r.data, 0, assembly, received, n);
            received += n;
            if (r.last) {
                if (received != total) {
                    return "last piece at " + received + " of " + total + " bytes";
                }
                return new FetchedPage(gpa, pages, false, ByteBuffer.wrap(assembly));
            }
            if (received == total) {
                return "the page is complete but its last piece is not marked last";
            }
            return null;
        }
    }
}
