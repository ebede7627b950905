package dev.ferry.control.edge;

import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.PageTransferServiceGrpc;
import dev.ferry.v1.PostcopyPagerServiceGrpc;
import java.time.Duration;
import java.util.Map;

/**
 * The numbers the agent's listeners enforce, each with the reason for its value. Per-method message sizes are
 * checked by {@link MessageGate}; the transport's own limit per listener is the largest of its methods', so an
 * oversized message is refused before it is buffered.
 */
public final class EdgeLimits {
    private EdgeLimits() {}

    // ---- message sizes -------------------------------------------------------------------------------------------

    /** Names, IDs, a VM spec, a migration policy, health and reflection requests: a few hundred bytes. */
    public static final int SMALL_MESSAGE = 64 << 10;
    /** NegotiateMigration: up to 256 CPUID entries, 1024 state-section versions, 32 regions: well under 1 MiB. */
    public static final int NEGOTIATE_MESSAGE = 1 << 20;
    /**
     * TransferDeviceState (every vCPU's and device's state) and CompleteIncomingMigration (discard and push
     * bitmaps: 1 MiB each for 32 GiB) carry a few MiB; migration_service.proto promises at least 16 MiB.
     */
    public static final int CONTROL_MAX_MESSAGE = 16 << 20;
    /** A PageBatch carries at most 1 MiB of pages (256) plus a header of at most 512 ranges (a few KiB). */
    public static final int DATA_MAX_MESSAGE = 2 << 20;
    /** The pager only receives fault requests (a few dozen bytes) and reflection/health requests. */
    public static final int PAGER_MAX_MESSAGE = SMALL_MESSAGE;
    /** Request headers: a session token is 43 characters; 8 KiB is gRPC's usual default, set explicitly. */
    public static final int MAX_HEADER_BYTES = 8 << 10;

    /** Per-method request limit on the control listener. */
    public static int controlMessageLimit(String fullMethodName) {
        if (fullMethodName.equals(MigrationServiceGrpc.getTransferDeviceStateMethod().getFullMethodName())
                || fullMethodName.equals(MigrationServiceGrpc.getCompleteIncomingMigrationMethod().getFullMethodName())) {
            return CONTROL_MAX_MESSAGE;
        }
        if (fullMethodName.equals(MigrationServiceGrpc.getNegotiateMigrationMethod().getFullMethodName())) {
            return NEGOTIATE_MESSAGE;
        }
        return SMALL_MESSAGE;
    }

    /** Per-method request limit on the data listener. */
    public static int dataMessageLimit(String fullMethodName) {
        return fullMethodName.equals(PageTransferServiceGrpc.getStreamPagesMethod().getFullMethodName())
                ? DATA_MAX_MESSAGE : SMALL_MESSAGE;
    }

    /** Per-method request limit on the pager listener. */
    public static int pagerMessageLimit(String fullMethodName) {
        return PAGER_MAX_MESSAGE;
    }

    // ---- connections -------------------------------------------------------------------------------------------

    /**
     * Concurrent calls per connection on the control listener: a CLI or operator watching every migration of an
     * agent keeps one WatchMigration per migration open on one connection.
     */
    public static final int CONTROL_MAX_CALLS_PER_CONNECTION = 128;
    /**
     * On the data listener: up to 64 page streams per migration, and concurrent migrations from one source share
     * a connection. A client over the limit waits for a free stream, which would stall a round: keep it generous.
     */
    public static final int DATA_MAX_CALLS_PER_CONNECTION = 512;
    /** On the pager listener: one fault stream per migration (plus unary faults). */
    public static final int PAGER_MAX_CALLS_PER_CONNECTION = 64;
    /** A connection with no call for this long is closed (GOAWAY); clients reconnect on their next call. */
    public static final Duration MAX_CONNECTION_IDLE = Duration.ofMinutes(5);
    /**
     * A connection older than this takes no new calls (GOAWAY) and clients reconnect. Calls in flight go on with no
     * grace limit: a migration's page streams and watches must never be cut by connection age.
     */
    public static final Duration MAX_CONNECTION_AGE = Duration.ofHours(1);

    // ---- calls ---------------------------------------------------------------------------------------------------

    /** Unary calls: above the longest wait inside one (a guest's fill or self-check, 120 s). */
    public static final Duration UNARY_DEADLINE = Duration.ofSeconds(180);
    /** Streams (reflection, and anything without its own entry): a request at least this often until half-close. */
    public static final Duration STREAM_SILENCE = Duration.ofSeconds(60);
    /**
     * Page streams: every round ends on every stream with an end_of_round batch, and a destination already aborts a
     * session after 60 s without a page; twice that leaves the session's own, clearer, reason to fire first.
     */
    public static final Duration PAGE_STREAM_SILENCE = Duration.ofSeconds(120);

    private static final Map<String, Duration> SILENCE = Map.of(
            PageTransferServiceGrpc.getStreamPagesMethod().getFullMethodName(), PAGE_STREAM_SILENCE);

    /**
     * Longest gap between a stream's request messages, or null for none: StreamPageFaults is exempt, since a guest
     * may touch no missing page for minutes; it is bounded by its session instead (token-checked at the start, and
     * it ends with the migration).
     */
    public static Duration silenceLimit(String fullMethodName) {
        if (fullMethodName.equals(PostcopyPagerServiceGrpc.getStreamPageFaultsMethod().getFullMethodName())) {
            return null;
        }
        return SILENCE.getOrDefault(fullMethodName, STREAM_SILENCE);
    }
}
