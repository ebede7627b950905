package dev.ferry.dataplane;

import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.PageHashes;
import dev.ferry.v1.FerryMetadata;
import dev.ferry.v1.PageAck;
import dev.ferry.v1.PageTransferServiceGrpc;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.protobuf.ProtoUtils;
import java.util.Objects;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.BooleanSupplier;

/**
 * The source side of the data plane for one migration: N StreamPages calls on one channel, opened by the
 * constructor and kept open across rounds until {@link #close()}.
 *
 * <h2>A round</h2>
 * {@link #sendRound} hands the round's pages to the streams in 64-page chunks from one shared {@link PageCursor}
 * (a {@link RoundCursor} over a dirty bitmap, or the caller's own); each stream has a worker thread that turns its
 * chunks into batches ({@link StreamPlanner}: non-zero pages as data runs, zero pages as zero ranges, at most 1 MiB
 * of data per batch), waits until its call {@code isReady()} (woken by {@code onReady}), takes the batch's wire bytes
 * from the shared {@link BandwidthLimiter} and sends it. gRPC serializes the batch in that same {@code sendMessage}
 * call ({@link OutgoingBatch}), copying the pages from guest memory into gRPC's buffers and recording the hash of the
 * copied bytes. Each stream's last batch of the round carries end_of_round; the round is done when every stream's
 * destination has acknowledged it (PageAck completed_round), so every page is in destination memory when this
 * returns.
 *
 * <h2>Flow control</h2>
 * A worker never sends while its call is not ready, so what is queued per stream is bounded by the call's on-ready
 * threshold ({@link Options#onReadyThresholdBytes}) plus one batch; the destination in turn requests batches only
 * as it writes them into memory, so a slow destination slows the sender through HTTP/2 flow control.
 *
 * <h2>States</h2>
 * IDLE (between rounds) → SENDING (in sendRound) → IDLE, or FAILED on any stream error, cancellation or
 * interrupt (all calls are then cancelled; every later sendRound fails), or CLOSED by {@link #close()}.
 *
 * <p>Thread-safety: one sendRound at a time; {@link #close()} may be called from any thread, also during a round
 * (which then fails with CANCELLED). The {@code cancelled} supplier is polled from the worker threads and the caller.
 */
public final class PageSender implements AutoCloseable {
    /**
     * Tuning knobs with their defaults in {@link #DEFAULT}.
     *
     * @param onReadyThresholdBytes how much a stream may buffer before it counts as not ready
     * @param zeroPageElision       whether all-zero pages go as zero ranges (the negotiated ZERO_PAGE_ELISION
     *                              feature); without it they go as data
     * @param compression           LZ4 compression of batches; anything but OFF only with the negotiated
     *                              LZ4_PAGE_COMPRESSION feature
     */
    public record Options(int onReadyThresholdBytes, boolean zeroPageElision, PageCompression compression) {
        /** 4 MiB: a worker can serialize the next batch while Netty is still writing the previous ones. */
        public static final Options DEFAULT = new Options(4 << 20, true, PageCompression.OFF);

        /** These options with zero-page elision as negotiated. */
        public Options withZeroPageElision(boolean on) {
            return new Options(onReadyThresholdBytes, on, compression);
        }

        /** These options with page compression as negotiated. */
        public Options withCompression(PageCompression c) {
            return new Options(onReadyThresholdBytes, zeroPageElision, c);
        }

        public Options {
            if (onReadyThresholdBytes <= 0) {
                throw new IllegalArgumentException("onReadyThresholdBytes must be > 0");
            }
            Objects.requireNonNull(compression, "compression");
        }
    }

    static final MethodDescriptor<OutgoingBatch, PageAck> METHOD = PageTransferServiceGrpc.getStreamPagesMethod()
            .toBuilder(OutgoingBatch.MARSHALLER, ProtoUtils.marshaller(PageAck.getDefaultInstance()))
            .build();

    /** How often waiting threads poll {@code cancelled} when nothing else wakes them. */
    private static final long POLL_NANOS = TimeUnit.MILLISECONDS.toNanos(10);
    /** Upper bound on waiting for workers to stop after an abort (they normally take one poll interval). */
    private static final long WORKER_STOP_NANOS = TimeUnit.SECONDS.toNanos(10);

    private enum State { IDLE, SENDING, FAILED, CLOSED }

    private final MemoryLayout layout;
    private final PageHashes hashes;
    private final BandwidthLimiter limiter;
    private final boolean zeroPageElision;
    private final PageCompression compression;
    private final MemoryFence fence = new MemoryFence();
    /** Serialized bytes handed to gRPC (sendMessage) so far, for flow-control tests and metrics. */
    private final LongAdder bytesHandedToGrpc = new LongAdder();
    private final Stream[] streams;
    private final ExecutorService workers;

    /**
     * Guards the sender state and every Stream's state fields below; {@link #changed} is signalled on every event
     * (ack, ready, close, worker finished, abort). Never held while calling into a ClientCall (in-process transports
     * may call back synchronously) nor while calling {@code cancelled}.
     */
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    // Guarded by lock.
    private State state = State.IDLE;
    private Status failure;
    private int lastRound;
    private int workersRunning;

    public PageSender(Channel dataChannel, String sessionToken, GuestMemory memory, PageHashes hashes, int streams,
            BandwidthLimiter limiter) {
        this(dataChannel, sessionToken, memory, hashes, streams, limiter, Options.DEFAULT);
    }

    public PageSender(Channel dataChannel, String sessionToken, GuestMemory memory, PageHashes hashes, int streams,
            BandwidthLimiter limiter, Options options) {
        this(java.util.List.of(Objects.requireNonNull(dataChannel, "dataChannel")), sessionToken, memory, hashes, streams,
                limiter, options);
    }

    /**
     * Streams spread round-robin over {@code dataChannels}: one per data-plane address the destination
     * offered, so a destination with several migration networks receives on all of them.
     */
    public PageSender(java.util.List<? extends Channel> dataChannels, String sessionToken, GuestMemory memory,
            PageHashes hashes, int streams, BandwidthLimiter limiter, Options options) {
        if (dataChannels.isEmpty()) {
            throw new IllegalArgumentException("need at least one data channel");
        }
        Objects.requireNonNull(sessionToken, "sessionToken");
        this.layout = new MemoryLayout(Objects.requireNonNull(memory, "memory"));
        this.hashes = Objects.requireNonNull(hashes, "hashes");
        this.limiter = Objects.requireNonNull(limiter, "limiter");
        this.zeroPageElision = options.zeroPageElision();
        this.compression = options.compression();
        if (streams < 1) {
            throw new IllegalArgumentException("need at least one stream, got " + streams);
        }
        this.workers = Executors.newFixedThreadPool(streams, daemonThreads());
        CallOptions callOptions = CallOptions.DEFAULT.withOnReadyThreshold(options.onReadyThresholdBytes());
        this.streams = new Stream[streams];
        for (int i = 0; i < streams; i++) {
            this.streams[i] = new Stream(i, dataChannels.get(i % dataChannels.size()).newCall(METHOD, callOptions));
        }
        for (Stream s : this.streams) {
            // One Metadata per call: gRPC adds its own headers to the object it is given while starting.
            Metadata headers = new Metadata();
            headers.put(FerryMetadata.SESSION_TOKEN, sessionToken);
            s.start(headers);
        }
    }

    /**
     * Sends every page set in {@code pages} as round {@code round} and returns once every stream's destination has
     * acknowledged the round. Rounds must increase. Updates {@code hashes} for every page sent (the hash of the bytes
     * sent; 0 for zero pages).
     *
     * @throws PageTransferException with the failing stream's status, or CANCELLED when {@code cancelled} returned
     *                               true (polled between batches and while waiting); the sender is unusable after
     * @throws InterruptedException  when the calling thread is interrupted; the sender is unusable after
     */
    public RoundStats sendRound(int round, DirtyBitmap pages, BooleanSupplier cancelled)
            throws PageTransferException, InterruptedException {
        return sendRound(round, pages, cancelled, () -> { });
    }

    /**
     * As {@link #sendRound(int, DirtyBitmap, BooleanSupplier)}, and runs {@code whileSending} on the calling thread
     * once the streams have started, before waiting for the acknowledgements: the switchover saves device state
     * there while its last pages are on the wire. If it throws, the round is aborted and that is rethrown.
     */
    public RoundStats sendRound(int round, DirtyBitmap pages, BooleanSupplier cancelled, Runnable whileSending)
            throws PageTransferException, InterruptedException {
        Objects.requireNonNull(pages, "pages");
        return sendRound(round, new RoundCursor(pages.ranges()), cancelled, whileSending);
    }

    /**
     * Sends every page {@code cursor} hands out as round {@code round}, as {@link #sendRound(int, DirtyBitmap,
     * BooleanSupplier)} does: one round however many pages, so the streams never drain between parts of it.
     */
    public RoundStats sendRound(int round, PageCursor cursor, BooleanSupplier cancelled)
            throws PageTransferException, InterruptedException {
        return sendRound(round, cursor, cancelled, () -> { });
    }

    private RoundStats sendRound(int round, PageCursor cursor, BooleanSupplier cancelled, Runnable whileSending)
            throws PageTransferException, InterruptedException {
        Objects.requireNonNull(cursor, "cursor");
        Objects.requireNonNull(cancelled, "cancelled");
        Objects.requireNonNull(whileSending, "whileSending");
        long start = System.nanoTime();
        lock.lock();
        try {
            switch (state) {
                case SENDING -> throw new IllegalStateException("sendRound is already running");
                case CLOSED -> throw new PageTransferException(
                        Status.FAILED_PRECONDITION.withDescription("page sender is closed"));
                case FAILED -> throw new PageTransferException(Status.FAILED_PRECONDITION
                        .withDescription("page sender failed in an earlier round: " + describe(failure))
                        .withCause(failure.asRuntimeException()));
                case IDLE -> { }
            }
            if (round <= lastRound) {
                throw new IllegalArgumentException("round " + round + " does not follow round " + lastRound);
            }
            state = State.SENDING;
            workersRunning = streams.length;
            for (Stream s : streams) {
                s.roundTotals = null;
                s.roundError = null;
                workers.execute(() -> s.runRound(round, cursor, cancelled));
            }
        } finally {
            lock.unlock();
        }
        try {
            whileSending.run();
        } catch (RuntimeException | Error e) {
            abort(Status.CANCELLED.withDescription("round " + round + " abandoned: " + e));
            awaitWorkersStopped();
            throw e;
        }
        try {
            awaitRound(round, cancelled);
        } catch (PageTransferException e) {
            abort(e.status());
            awaitWorkersStopped();
            throw e;
        } catch (InterruptedException e) {
            abort(Status.CANCELLED.withDescription("round " + round + " interrupted"));
            awaitWorkersStopped();
            throw e;
        }
        long pagesSent = 0;
        long zeroPages = 0;
        long wireBytes = 0;
        long compressedPages = 0;
        long compressedBytes = 0;
        lock.lock();
        try {
            for (Stream s : streams) {
                pagesSent += s.roundTotals.pages;
                zeroPages += s.roundTotals.zeroPages;
                wireBytes += s.roundTotals.wireBytes;
                compressedPages += s.roundTotals.compressedPages;
                compressedBytes += s.roundTotals.compressedBytes;
            }
            lastRound = round;
            if (state == State.SENDING) {
                state = State.IDLE;
            }
        } finally {
            lock.unlock();
        }
        return new RoundStats(round, pagesSent, zeroPages, wireBytes, System.nanoTime() - start, compressedPages,
                compressedBytes);
    }

    private void awaitRound(int round, BooleanSupplier cancelled) throws PageTransferException, InterruptedException {
        while (true) {
            lock.lock();
            try {
                if (failure != null) {
                    throw new PageTransferException(failure);
                }
                boolean acked = true;
                for (Stream s : streams) {
                    if (s.closeStatus != null) {
                        throw new PageTransferException(s.closeStatus);
                    }
                    if (s.roundError != null) {
                        throw new PageTransferException(s.roundError);
                    }
                    acked &= s.completedRound >= round;
                }
                if (acked && workersRunning == 0) {
                    return;
                }
                changed.awaitNanos(POLL_NANOS);
            } finally {
                lock.unlock();
            }
            if (cancelled.getAsBoolean()) {
                throw new PageTransferException(Status.CANCELLED.withDescription("round " + round + " cancelled"));
            }
        }
    }

    /**
     * Fails the sender: cancels every call (the destination sees CANCELLED) and interrupts the workers that are
     * running (one may be sleeping in the limiter); workers not started yet see the failure and return at once.
     */
    private void abort(Status why) {
        lock.lock();
        try {
            if (failure == null) {
                failure = why;
            }
            if (state != State.CLOSED) {
                state = State.FAILED;
            }
            for (Stream s : streams) {
                if (s.worker != null) {
                    s.worker.interrupt(); // only while it runs runRound: see there
                }
            }
            changed.signalAll();
        } finally {
            lock.unlock();
        }
        for (Stream s : streams) {
            s.cancel(why);
        }
    }

    /**
     * Waits (uninterruptibly, at most {@link #WORKER_STOP_NANOS}) until no worker runs: after an abort the workers
     * notice within one poll interval or one batch.
     */
    private void awaitWorkersStopped() {
        boolean interrupted = false;
        long deadline = System.nanoTime() + WORKER_STOP_NANOS;
        lock.lock();
        try {
            while (workersRunning > 0) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                try {
                    changed.awaitNanos(left);
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
        } finally {
            lock.unlock();
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Half-closes every stream (the destination then completes each call with OK). Idempotent. During a round, fails
     * the round with CANCELLED instead.
     *
     * <p>When this returns, nothing of this sender reads guest memory any more (workers have stopped, and batches
     * gRPC has not serialized yet fail instead of reading), so the caller may unmap it.
     */
    @Override
    public void close() {
        State before;
        lock.lock();
        try {
            before = state;
            if (before == State.CLOSED) {
                return;
            }
            state = State.CLOSED;
            for (Stream s : streams) {
                s.halfClosed = true;
            }
        } finally {
            lock.unlock();
        }
        if (before == State.SENDING) {
            abort(Status.CANCELLED.withDescription("page sender closed during a round"));
        } else if (before == State.IDLE) {
            for (Stream s : streams) {
                s.halfClose();
            }
        }
        workers.shutdown();
        awaitWorkersStopped();
        fence.close();
    }

    long bytesHandedToGrpc() {
        return bytesHandedToGrpc.sum();
    }

    private static String describe(Status s) {
        return s.getCode() + (s.getDescription() == null ? "" : ": " + s.getDescription());
    }

    private static ThreadFactory daemonThreads() {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, "ferry-page-sender-" + n.getAndIncrement());
            t.setDaemon(true);
            return t;
        };
    }

    private record Totals(long pages, long zeroPages, long wireBytes, long compressedPages, long compressedBytes) {}

    /** One StreamPages call: its gRPC listener and its worker's round loop. */
    private final class Stream extends ClientCall.Listener<PageAck> {
        private final int index;
        private final ClientCall<OutgoingBatch, PageAck> call;
        /** ClientCall is not thread-safe (except request()): worker, close() and abort() all go through this. */
        private final Object callLock = new Object();
        // Guarded by PageSender.lock.
        private long completedRound;
        private long readyEpoch;
        private Status closeStatus; // a failure; null while open and after a normal close
        private boolean halfClosed;
        private Totals roundTotals;
        private Status roundError;
        private Thread worker; // the thread running runRound, so abort() interrupts nothing else
        /** Worker only: kept across rounds, so what it learnt about the link and the pages carries over. */
        private final CompressionGovernor governor = new CompressionGovernor(compression);

        Stream(int index, ClientCall<OutgoingBatch, PageAck> call) {
            this.index = index;
            this.call = call;
        }

        void start(Metadata headers) {
            synchronized (callLock) {
                call.start(this, headers);
            }
            call.request(1);
        }

        @Override
        public void onReady() {
            lock.lock();
            try {
                readyEpoch++;
                changed.signalAll();
            } finally {
                lock.unlock();
            }
        }

        @Override
        public void onMessage(PageAck ack) {
            lock.lock();
            try {
                completedRound = Math.max(completedRound, ack.getCompletedRound());
                changed.signalAll();
            } finally {
                lock.unlock();
            }
            call.request(1);
        }

        @Override
        public void onClose(Status status, Metadata trailers) {
            lock.lock();
            try {
                if (!status.isOk()) {
                    closeStatus = status;
                } else if (!halfClosed) {
                    closeStatus = Status.INTERNAL.withDescription(
                            "destination completed data-plane stream " + index + " before the source half-closed it");
                }
                changed.signalAll();
            } finally {
                lock.unlock();
            }
        }

        /** Worker: sends this stream's share of the round, then records the outcome. */
        void runRound(int round, PageCursor cursor, BooleanSupplier cancelled) {
            long pages = 0;
            long zeroPages = 0;
            long wireBytes = 0;
            long compressedPages = 0;
            long compressedBytes = 0;
            Status error = null;
            lock.lock();
            try {
                worker = Thread.currentThread();
            } finally {
                lock.unlock();
            }
            try {
                checkRunning(round, cancelled);
                StreamPlanner planner = new StreamPlanner(layout, hashes, fence, cursor, index, round,
                        zeroPageElision);
                OutgoingBatch batch;
                long t0 = System.nanoTime();
                while ((batch = planner.next()) != null) {
                    checkRunning(round, cancelled);
                    long compressTime = 0;
                    if (batch.dataPages > 0 && governor.compressNext()) {
                        long c0 = System.nanoTime();
                        batch = batch.compressed(Lz4.COMPRESSOR);
                        compressTime = System.nanoTime() - c0;
                    }
                    long w0 = System.nanoTime();
                    awaitReady(round, cancelled);
                    limiter.acquire(batch.serializedSize());
                    long waited = System.nanoTime() - w0;
                    synchronized (callLock) {
                        call.sendMessage(batch);
                    }
                    bytesHandedToGrpc.add(batch.serializedSize());
                    pages += batch.dataPages;
                    zeroPages += batch.zeroPageCount;
                    wireBytes += batch.serializedSize();
                    if (batch.codec == PageWire.CODEC_LZ4) {
                        compressedPages += batch.dataPages;
                        compressedBytes += batch.dataFieldBytes();
                    }
                    long t1 = System.nanoTime();
                    governor.sent(batch.dataFieldBytes(), compressTime > 0 ? batch.dataBytes() : 0,
                            compressTime > 0 ? batch.dataFieldBytes() : 0, compressTime, waited, t1 - t0 - waited);
                    t0 = t1;
                }
            } catch (PageTransferException e) {
                error = e.status();
            } catch (InterruptedException e) {
                error = Status.CANCELLED.withDescription("stream " + index + " interrupted");
            } catch (java.io.IOException e) { // reading guest memory for compression after close()
                error = Status.CANCELLED.withDescription("stream " + index + ": " + e.getMessage());
            } catch (RuntimeException | Error e) {
                error = Status.INTERNAL.withDescription("data-plane stream " + index + " failed: " + e).withCause(e);
            }
            lock.lock();
            try {
                worker = null;
                // An interrupt from abort() that arrived after the work ended must not leak into the pool thread.
                Thread.interrupted();
                if (error != null) {
                    roundError = error;
                } else {
                    roundTotals = new Totals(pages, zeroPages, wireBytes, compressedPages, compressedBytes);
                }
                workersRunning--;
                changed.signalAll();
            } finally {
                lock.unlock();
            }
        }

        private void checkRunning(int round, BooleanSupplier cancelled) throws PageTransferException {
            lock.lock();
            try {
                throwIfFailed();
            } finally {
                lock.unlock();
            }
            if (cancelled.getAsBoolean()) {
                throw new PageTransferException(Status.CANCELLED.withDescription("round " + round + " cancelled"));
            }
        }

        /** Waits until the call can take a message without buffering beyond its on-ready threshold. */
        private void awaitReady(int round, BooleanSupplier cancelled) throws PageTransferException, InterruptedException {
            while (true) {
                long epoch;
                lock.lock();
                try {
                    throwIfFailed();
                    epoch = readyEpoch;
                } finally {
                    lock.unlock();
                }
                boolean ready;
                synchronized (callLock) {
                    ready = call.isReady();
                }
                if (ready) {
                    return;
                }
                lock.lock();
                try {
                    if (readyEpoch == epoch && failure == null && closeStatus == null) {
                        changed.awaitNanos(POLL_NANOS);
                    }
                } finally {
                    lock.unlock();
                }
                if (cancelled.getAsBoolean()) {
                    throw new PageTransferException(Status.CANCELLED.withDescription("round " + round + " cancelled"));
                }
            }
        }

        private void throwIfFailed() throws PageTransferException {
            if (failure != null) {
                throw new PageTransferException(failure);
            }
            if (closeStatus != null) {
                throw new PageTransferException(closeStatus);
            }
        }

        void cancel(Status why) {
            synchronized (callLock) {
                call.cancel(describe(why), why.asRuntimeException());
            }
        }

        void halfClose() {
            synchronized (callLock) {
                try {
                    call.halfClose();
                } catch (IllegalStateException e) {
                    // Already closed by the destination: nothing left to half-close.
                }
            }
        }
    }
}
