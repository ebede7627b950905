package dev.ferry.control.edge;

import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import java.time.Duration;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.function.ToIntFunction;

/**
 * What stands between a listener and the services behind it: per-method message limits and parse failures as
 * statuses ({@link MessageGate}), server-side time limits ({@link CallTimeouts}), and rate-limited logging of
 * refusals ({@link RefusalLog}). One per agent; its timer thread ends with {@link #close()}.
 */
public final class EdgeGuard implements AutoCloseable {
    private final ScheduledThreadPoolExecutor timer = timer();
    private final CallTimeouts timeouts;
    private final RefusalLog refusals;

    public EdgeGuard(Duration unaryDeadline, Function<String, Duration> silence, RefusalLog refusals) {
        this.timeouts = new CallTimeouts(unaryDeadline, silence, timer);
        this.refusals = refusals;
    }

    /** One thread; a cancelled check leaves the queue at once, so ended streams are not kept until it was due. */
    private static ScheduledThreadPoolExecutor timer() {
        ScheduledThreadPoolExecutor t = new ScheduledThreadPoolExecutor(1, r -> {
            Thread thread = new Thread(r, "ferry-edge-timer");
            thread.setDaemon(true);
            return thread;
        });
        t.setRemoveOnCancelPolicy(true);
        return t;
    }

    /** Time limits still waiting to be checked: one per open stream, none for a stream that ended. */
    int pendingChecks() {
        return timer.getQueue().size();
    }

    /** The agent's defaults ({@link EdgeLimits}), refusals logged to the system logger. */
    public static EdgeGuard defaults() {
        return new EdgeGuard(EdgeLimits.UNARY_DEADLINE, EdgeLimits::silenceLimit, RefusalLog.toSystemLogger());
    }

    /** {@code service} behind the guard, its requests limited per method by {@code maxBytes}. */
    public ServerServiceDefinition guard(ServerServiceDefinition service, ToIntFunction<String> maxBytes) {
        // The last interceptor runs first: refusals are logged from what finally closes the call.
        return ServerInterceptors.intercept(MessageGate.guard(service, maxBytes), timeouts, refusals);
    }

    /** Transport limits of one Netty listener: message and header size, calls per connection, idle and age. */
    public static NettyServerBuilder limit(NettyServerBuilder b, int maxMessage, int maxCallsPerConnection) {
        return b.maxInboundMessageSize(maxMessage)
                .maxInboundMetadataSize(EdgeLimits.MAX_HEADER_BYTES)
                .maxConcurrentCallsPerConnection(maxCallsPerConnection)
                .maxConnectionIdle(EdgeLimits.MAX_CONNECTION_IDLE.toNanos(), TimeUnit.NANOSECONDS)
                .maxConnectionAge(EdgeLimits.MAX_CONNECTION_AGE.toNanos(), TimeUnit.NANOSECONDS)
                .maxConnectionAgeGrace(Long.MAX_VALUE, TimeUnit.NANOSECONDS); // calls in flight are never cut
    }

    @Override
    public void close() {
        timer.shutdownNow();
    }
}
