package dev.ferry.control.edge;

import io.grpc.ForwardingServerCall;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.time.Duration;
import java.util.EnumSet;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.function.Consumer;
import java.util.function.LongSupplier;

/**
 * Logs calls the edge refused (bad input, over a limit, unauthenticated, past a deadline) as one line per kind
 * (method and status code) per interval, with the number of like refusals left out since the last line, and
 * never a stack trace: 100 bad requests must not write 234 KB of log.
 */
public final class RefusalLog implements ServerInterceptor {
    /** Refusals of the caller's input or rights; other codes are the service's business and not logged here. */
    static final Set<Status.Code> REFUSALS = EnumSet.of(Status.Code.INVALID_ARGUMENT, Status.Code.RESOURCE_EXHAUSTED,
            Status.Code.UNAUTHENTICATED, Status.Code.PERMISSION_DENIED, Status.Code.OUT_OF_RANGE,
            Status.Code.DEADLINE_EXCEEDED);
    public static final Duration DEFAULT_INTERVAL = Duration.ofSeconds(10);
    private static final int MAX_DESCRIPTION = 200;

    private final long intervalNanos;
    private final LongSupplier clock;
    private final Consumer<String> sink;
    // Keys are method x code, bounded by the services registered; one small record each.
    private final ConcurrentMap<String, Window> windows = new ConcurrentHashMap<>();

    /** One line per kind per {@code interval} to {@code sink}, timed by {@code nanoClock}. */
    public RefusalLog(Duration interval, LongSupplier nanoClock, Consumer<String> sink) {
        this.intervalNanos = interval.toNanos();
        this.clock = nanoClock;
        this.sink = sink;
    }

    /** Logs to System.Logger "dev.ferry.control.edge.RefusalLog" at INFO, every {@link #DEFAULT_INTERVAL}. */
    public static RefusalLog toSystemLogger() {
        System.Logger log = System.getLogger(RefusalLog.class.getName());
        return new RefusalLog(DEFAULT_INTERVAL, System::nanoTime, line -> log.log(System.Logger.Level.INFO, line));
    }

    private static final class Window {
        long start;
        long suppressed;
        boolean any;
    }

    /** Records one refusal; logs it unless a line of the same kind was written less than an interval ago. */
    public void refused(String method, Status status) {
        String key = method + " " + status.getCode();
        Window w = windows.computeIfAbsent(key, k -> new Window());
        long now = clock.getAsLong();
        long suppressed;
        synchronized (w) {
            if (w.any && now - w.start < intervalNanos) {
                w.suppressed++;
                return;
            }
            suppressed = w.suppressed;
            w.any = true;
            w.start = now;
            w.suppressed = 0;
        }
        String d = status.getDescription() == null ? "" : ": " + BoundedText.truncate(status.getDescription(),
                MAX_DESCRIPTION).replace('\n', ' ');
        sink.accept("refused " + method + " " + status.getCode() + d
                + (suppressed > 0 ? " (and " + suppressed + " more like it not logged)" : ""));
    }

    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
            ServerCallHandler<Q, R> next) {
        String method = call.getMethodDescriptor().getFullMethodName();
        return next.startCall(new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
            @Override
            public void close(Status status, Metadata trailers) {
                if (REFUSALS.contains(status.getCode())) {
                    refused(method, status);
                }
                super.close(status, trailers);
            }
        }, headers);
    }
}
