package dev.ferry.control.migration;

import io.grpc.Channel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthGrpc;
import java.util.concurrent.TimeUnit;

/**
 * What a migration learns about its peer agent when the peer went quiet: a gRPC health check on the peer's control
 * address. An agent keeps its migrations (and its guests) in its own process, so a refused connection means the
 * process that held our session is gone, and with it whatever of the guest lived there; a timeout or a reset says
 * only that the network between us fails, and the peer may still hold its half.
 */
enum PeerLiveness {
    /** The peer's control listener answered. */
    ALIVE,
    /** Nothing listens at the peer's control address: its agent process, and our session in it, are gone. */
    GONE,
    /** No answer: the link is down or slow; the peer may still be there. */
    UNREACHABLE;

    private static final long DEADLINE_SECONDS = 5;

    static PeerLiveness probe(Channel peer) {
        try {
            HealthGrpc.newBlockingStub(peer).withDeadlineAfter(DEADLINE_SECONDS, TimeUnit.SECONDS)
                    .check(HealthCheckRequest.getDefaultInstance());
            return ALIVE;
        } catch (StatusRuntimeException e) {
            if (e.getStatus().getCode() != Status.Code.UNAVAILABLE
                    && e.getStatus().getCode() != Status.Code.DEADLINE_EXCEEDED) {
                return ALIVE; // it answered, if only to refuse
            }
            for (Throwable c = e; c != null; c = c.getCause()) {
                if (c instanceof java.net.ConnectException && String.valueOf(c.getMessage()).contains("refused")) {
                    return GONE;
                }
            }
            return UNREACHABLE;
        }
    }
}
