package dev.ferry.dataplane.postcopy;

import com.sun.jna.Native;
import dev.ferry.dataplane.SessionTokenCheck;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.linux.Errno;
import dev.ferry.linux.LibC;
import dev.ferry.v1.PageFaultRequest;
import dev.ferry.v1.PostcopyPagerServiceGrpc;
import io.grpc.Context;
import io.grpc.MethodDescriptor;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServiceDescriptor;
import io.grpc.Status;
import io.grpc.protobuf.ProtoUtils;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.ServerCalls;
import io.grpc.stub.StreamObserver;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.HashSet;
import java.util.Objects;
import java.util.Optional;

/**
 * The source's ferry.v1.PostcopyPagerService: answers the destination's page faults from the paused source VM's memory.
 *
 * <p>Bound with Ferry's own response marshaller ({@link OutgoingReply}: page bytes go from guest memory straight into
 * gRPC's buffers, no PageFaultReply message is built) under the generated service and method descriptors, so the wire
 * contract and the schema seen by reflection are those of postcopy_pager_service.proto.
 *
 * <p>Every call must carry the {@code ferry-session-token} of a session known to {@link PagerSessions}, else it fails
 * UNAUTHENTICATED before any message is read. Requests are validated: length 4 KiB / 2 MiB / 1 GiB (1 GiB on the stream
 * only) and address aligned to it, else INVALID_ARGUMENT; the page inside one region of guest memory, else
 * OUT_OF_RANGE (as the proto specifies); on the stream a fault_id already pending is INVALID_ARGUMENT. A stream error
 * ends the stream. A page that is entirely zero is answered with {@code zero = true} and no data; pages of memfd holes
 * are known to be zero without reading (and so without populating) source memory.
 *
 * <h2>StreamPageFaults: pipelining and flow control</h2>
 * Auto-request is off. The handler requests {@link FaultStream#INITIAL_REQUESTS} faults up front and one more per fault
 * fully answered, and sends only while the call {@code isReady()} (resuming from {@code onReady}), so a destination
 * that stops reading stops the source from reading further faults instead of making it buffer. Small faults (4 KiB,
 * 2 MiB: one reply each) go before the pieces of a 1 GiB fault in progress, so a vCPU waiting for a 4 KiB page is not
 * stuck behind 1 GiB. All callbacks run on the call's serialized executor.
 */
public final class PagerServer {
    /** The session of the current call, put in its Context by the token check. */
    static final Context.Key<Session> SESSION = Context.key("ferry-postcopy-page-source");

    static final MethodDescriptor<PageFaultRequest, OutgoingReply> PAGE_FAULT = PostcopyPagerServiceGrpc
            .getPageFaultMethod()
            .toBuilder(ProtoUtils.marshaller(PageFaultRequest.getDefaultInstance()), OutgoingReply.MARSHALLER)
            .build();
    static final MethodDescriptor<PageFaultRequest, OutgoingReply> STREAM_PAGE_FAULTS = PostcopyPagerServiceGrpc
            .getStreamPageFaultsMethod()
            .toBuilder(ProtoUtils.marshaller(PageFaultRequest.getDefaultInstance()), OutgoingReply.MARSHALLER)
            .build();

    private static final ByteBuffer ZERO_CHUNK = ByteBuffer.allocateDirect(64 << 10).asReadOnlyBuffer();

    private PagerServer() {
    }

    /** A session resolved from a token: the source and its region lookup. */
    record Session(PageSource source, RegionTable table) {}

    /** The service, for {@code ServerBuilder.addService}. */
    public static ServerServiceDefinition service(PagerSessions sessions) {
        Objects.requireNonNull(sessions, "sessions");
        ServiceDescriptor descriptor = ServiceDescriptor.newBuilder(PostcopyPagerServiceGrpc.SERVICE_NAME)
                .setSchemaDescriptor(PostcopyPagerServiceGrpc.getServiceDescriptor().getSchemaDescriptor())
                .addMethod(PAGE_FAULT)
                .addMethod(STREAM_PAGE_FAULTS)
                .build();
        ServerCallHandler<PageFaultRequest, OutgoingReply> unary = ServerCalls.asyncUnaryCall(PagerServer::pageFault);
        ServerCallHandler<PageFaultRequest, OutgoingReply> stream = ServerCalls.asyncBidiStreamingCall(responses -> {
            ServerCallStreamObserver<OutgoingReply> observer = (ServerCallStreamObserver<OutgoingReply>) responses;
            observer.disableAutoRequest();
            FaultStream h = new FaultStream(SESSION.get(), observer);
            h.start();
            return h;
        });
        ServerServiceDefinition definition = ServerServiceDefinition.builder(descriptor)
                .addMethod(PAGE_FAULT, unary)
                .addMethod(STREAM_PAGE_FAULTS, stream)
                .build();
        return ServerInterceptors.intercept(definition, new SessionTokenCheck<>(token -> Optional.ofNullable(sessions.byToken(token))
                .flatMap(s -> s.map(source -> new Session(source, regionTable(source)))), SESSION,
                "no migration has this token"));
    }

    private static RegionTable regionTable(PageSource source) {
        try {
            return new RegionTable(source.memory());
        } catch (IllegalStateException e) {
            throw Status.FAILED_PRECONDITION.withDescription(
                    "the migration does not serve page faults now: " + e.getMessage()).asRuntimeException();
        }
    }

    // ---- unary ----------------------------------------------------------------------------------------------------

    private static void pageFault(PageFaultRequest req, StreamObserver<OutgoingReply> responses) {
        Session s = SESSION.get();
        Status bad = validate(req, s.table(), true);
        if (bad != null) {
            responses.onError(bad.asRuntimeException());
            return;
        }
        long gpa = req.getGuestPhysicalAddress();
        long len = req.getLengthBytes();
        MemoryRegion r = s.table().regionOfGpa(gpa);
        if (!s.source().enterMemory()) {
            responses.onError(closedStatus().asRuntimeException());
            return;
        }
        boolean zero;
        try {
            zero = isZero(r, gpa, len);
        } finally {
            s.source().exitMemory();
        }
        notifyFaulted(s.source(), gpa, len);
        responses.onNext(zero ? OutgoingReply.zero(req.getFaultId(), gpa)
                : OutgoingReply.data(req.getFaultId(), gpa, true, s.source(), r, (int) len, false));
        responses.onCompleted();
    }

    // ---- validation and zero checks ----------------------------------------------------------------------------------

    /** Why {@code req} cannot be served, or null. */
    static Status validate(PageFaultRequest req, RegionTable table, boolean unary) {
        long gpa = req.getGuestPhysicalAddress();
        long len = req.getLengthBytes();
        if (!PagerWire.validLength(len)) {
            return Status.INVALID_ARGUMENT.withDescription("length_bytes " + Long.toUnsignedString(len)
                    + " is not a page size (4096, 2097152 or 1073741824)");
        }
        if (unary && len > PagerWire.MAX_PIECE) {
            return Status.INVALID_ARGUMENT.withDescription("a 1 GiB fault must use StreamPageFaults");
        }
        if (Long.remainderUnsigned(gpa, len) != 0) {
            return Status.INVALID_ARGUMENT.withDescription(String.format(
                    "guest_physical_address 0x%x is not aligned to length_bytes %d", gpa, len));
        }
        if (!table.insideOneRegion(gpa, len)) {
            return Status.OUT_OF_RANGE.withDescription(String.format(
                    "page 0x%x+%d is not inside guest memory", gpa, len));
        }
        return null;
    }

    /** True when {@code len} bytes at {@code gpa} (inside {@code r}) are all zero. Caller holds the memory fence. */
    static boolean isZero(MemoryRegion r, long gpa, long len) {
        for (long off = 0; off < len; off += PagerWire.MAX_PIECE) {
            long n = Math.min(PagerWire.MAX_PIECE, len - off);
            if (n >= PagerWire.SIZE_2M && isHole(r, gpa + off, n)) {
                continue;
            }
            int base = (int) (gpa + off - r.guestPhysAddr());
            for (int o = 0; o < n; o += ZERO_CHUNK.capacity()) {
                int c = (int) Math.min(ZERO_CHUNK.capacity(), n - o);
                if (r.view().slice(base + o, c).mismatch(ZERO_CHUNK.slice(0, c)) != -1) {
                    return false;
                }
            }
        }
        return true;
    }

    /** True when the memfd holds no data at {@code [gpa, gpa+len)} (a hole: reads as zero). False when unsure. */
    static boolean isHole(MemoryRegion r, long gpa, long len) {
        int fd = r.mapping().fd();
        if (fd < 0) {
            return false;
        }
        long off = gpa - r.guestPhysAddr();
        long data = LibC.lseek(fd, off, LibC.SEEK_DATA);
        if (data < 0) {
            return Native.getLastError() == Errno.ENXIO; // no data at or after off
        }
        return data >= off + len;
    }

    private static void notifyFaulted(PageSource source, long gpa, long len) {
        try {
            source.faulted(gpa, len >>> PagerWire.PAGE_SHIFT);
        } catch (RuntimeException e) {
            // Advisory only (it steers the background push): a failing listener must not fail the fault.
        }
    }

    private static Status closedStatus() {
        return Status.FAILED_PRECONDITION.withDescription("postcopy pager session closed: it no longer serves faults");
    }

    // ---- StreamPageFaults -------------------------------------------------------------------------------------------

    /** One StreamPageFaults call. All callbacks run on the call's serialized executor: no locking. */
    static final class FaultStream implements StreamObserver<PageFaultRequest> {
        /** Faults read ahead of the replies. */
        static final int INITIAL_REQUESTS = 32;

        private final PageSource source;
        private final RegionTable table;
        private final ServerCallStreamObserver<OutgoingReply> out;
        private final ArrayDeque<Job> small = new ArrayDeque<>();
        private final ArrayDeque<Job> big = new ArrayDeque<>();
        private final HashSet<Long> pendingIds = new HashSet<>();
        private boolean halfClosed;
        private boolean done;

        FaultStream(Session session, ServerCallStreamObserver<OutgoingReply> out) {
            this.source = session.source();
            this.table = session.table();
            this.out = out;
        }

        void start() {
            out.setOnReadyHandler(this::drain);
            out.setOnCancelHandler(this::cancelled);
            out.request(INITIAL_REQUESTS);
        }

        @Override
        public void onNext(PageFaultRequest req) {
            if (done) {
                return;
            }
            Status bad = validate(req, table, false);
            if (bad != null) {
                fail(bad);
                return;
            }
            if (!pendingIds.add(req.getFaultId())) {
                fail(Status.INVALID_ARGUMENT.withDescription(
                        "fault_id " + Long.toUnsignedString(req.getFaultId()) + " is already pending"));
                return;
            }
            long gpa = req.getGuestPhysicalAddress();
            Job j = new Job(req.getFaultId(), gpa, req.getLengthBytes(), table.regionOfGpa(gpa));
            (j.length <= PagerWire.MAX_PIECE ? small : big).add(j);
            drain();
        }

        /** Sends what can be sent now: small faults first, then pieces of the 1 GiB fault at the head. */
        private void drain() {
            while (!done) {
                boolean fromSmall = !small.isEmpty();
                Job j = fromSmall ? small.peek() : big.peek();
                if (j == null) {
                    if (halfClosed) {
                        done = true;
                        out.onCompleted();
                    }
                    return;
                }
                if (!out.isReady()) {
                    return; // onReady calls drain again
                }
                Boolean finished = step(j);
                if (finished == null) {
                    fail(closedStatus());
                    return;
                }
                if (finished) {
                    (fromSmall ? small : big).poll();
                    pendingIds.remove(j.faultId);
                    out.request(1);
                }
            }
        }

        /** Sends the next reply of {@code j}: true when that completed it, null when the session is closed. */
        private Boolean step(Job j) {
            if (!j.zeroChecked) {
                if (!source.enterMemory()) {
                    return null;
                }
                boolean zero;
                try {
                    zero = isZero(j.region, j.gpa, j.length);
                } finally {
                    source.exitMemory();
                }
                j.zeroChecked = true;
                if (zero) {
                    notifyFaulted(source, j.gpa, j.length);
                    out.onNext(OutgoingReply.zero(j.faultId, j.gpa));
                    return true;
                }
            }
            int n = (int) Math.min(PagerWire.MAX_PIECE, j.length - j.sent);
            long at = j.gpa + j.sent;
            boolean last = j.sent + n == j.length;
            boolean hole = false;
            if (n >= PagerWire.SIZE_2M && j.length > n) { // a piece of a 1 GiB page: holes need not be read
                if (!source.enterMemory()) {
                    return null;
                }
                try {
                    hole = isHole(j.region, at, n);
                } finally {
                    source.exitMemory();
                }
            }
            if (last) {
                notifyFaulted(source, j.gpa, j.length);
            }
            out.onNext(OutgoingReply.data(j.faultId, at, last, source, j.region, n, hole));
            j.sent += n;
            return last;
        }

        private void fail(Status status) {
            done = true;
            small.clear();
            big.clear();
            out.onError(status.asRuntimeException());
        }

        private void cancelled() {
            done = true;
            small.clear();
            big.clear();
        }

        @Override
        public void onError(Throwable t) {
            cancelled();
        }

        @Override
        public void onCompleted() {
            halfClosed = true;
            drain();
        }
    }

    /** One fault being answered on a stream. */
    private static final class Job {
        final long faultId;
        final long gpa;
        final long length;
        final MemoryRegion region;
        long sent;
        boolean zeroChecked;

        Job(long faultId, long gpa, long length, MemoryRegion region) {
            this.faultId = faultId;
            this.gpa = gpa;
            this.length = length;
            this.region = region;
        }
    }
}
