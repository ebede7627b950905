package dev.ferry.control.edge;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor.MethodType;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.time.Duration;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;

/**
 * Time limits the server sets whatever the client asks.
 *
 * <ul>
 *   <li>Unary calls: the call's Context gets a deadline of {@code unary} (or the client's, if earlier). When it
 *       passes the call is closed with DEADLINE_EXCEEDED and the Context cancelled, so handlers that check it and
 *       the calls they make to other agents stop too.</li>
 *   <li>Streams: until the client half-closes, a gap of more than the method's silence limit between two request
 *       messages (or before the first) closes the call with DEADLINE_EXCEEDED. A server-streaming call (WatchMigration,
 *       health Watch) half-closes with its one request, so it is never cut however long it runs; a method whose
 *       limit is null (the postcopy fault stream: a guest may touch no missing page for minutes) has none.</li>
 * </ul>
 */
public final class CallTimeouts implements ServerInterceptor {
    private final Duration unary;
    private final Function<String, Duration> silence;
    private final ScheduledExecutorService timer;

    /**
     * @param unary   longest a unary call may run
     * @param silence longest gap between a stream's request messages, by full method name; null: no limit
     */
    public CallTimeouts(Duration unary, Function<String, Duration> silence, ScheduledExecutorService timer) {
        this.unary = unary;
        this.silence = silence;
        this.timer = timer;
    }

    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
            ServerCallHandler<Q, R> next) {
        SerializedCall<Q, R> safe = SerializedCall.of(call);
        String method = call.getMethodDescriptor().getFullMethodName();
        if (call.getMethodDescriptor().getType() == MethodType.UNARY) {
            Context.CancellableContext ctx = Context.current().withDeadlineAfter(unary.toNanos(), TimeUnit.NANOSECONDS,
                    timer);
            ctx.addListener(c -> {
                if (c.cancellationCause() instanceof TimeoutException) {
                    safe.closeFromEdge(Status.DEADLINE_EXCEEDED.withDescription(String.format(
                            "%s ran past its deadline (the server allows unary calls %d s)", method,
                            unary.toSeconds())));
                }
            }, Runnable::run); // closing the call is quick and thread-safe (SerializedCall)
            return new Ending<>(Contexts.interceptCall(ctx, safe, headers, next), safe, ctx, null);
        }
        Duration limit = silence.apply(method);
        Context.CancellableContext ctx = Context.current().withCancellation();
        Silence watch = limit == null ? null : new Silence(safe, ctx, limit, method);
        ServerCall.Listener<Q> inner = Contexts.interceptCall(ctx, safe, headers, next);
        if (watch != null) {
            watch.arm();
        }
        return new Ending<>(inner, safe, ctx, watch);
    }

    /** Watches one stream for a gap between request messages longer than {@code limit}. */
    private final class Silence implements Runnable {
        private final SerializedCall<?, ?> call;
        private final Context.CancellableContext ctx;
        private final long limitNanos;
        private final String method;
        private volatile long lastMessage = System.nanoTime();
        private volatile boolean done; // half-closed or ended: nothing more to wait for
        // The armed check, cancelled when the stream is done: a check left to fire would keep the call, its handler
        // and whatever that holds (a migration's session, a VM) alive for the whole limit after the stream ended.
        private volatile ScheduledFuture<?> pending;

        Silence(SerializedCall<?, ?> call, Context.CancellableContext ctx, Duration limit, String method) {
            this.call = call;
            this.ctx = ctx;
            this.limitNanos = limit.toNanos();
            this.method = method;
        }

        void arm() {
            armIn(limitNanos);
        }

        private void armIn(long nanos) {
            pending = timer.schedule(this, nanos, TimeUnit.NANOSECONDS);
            if (done) { // stop() ran between the check and the schedule, and saw the previous future
                pending.cancel(false);
            }
        }

        void stop() {
            done = true;
            ScheduledFuture<?> p = pending;
            if (p != null) {
                p.cancel(false);
            }
        }

        @Override
        public void run() {
            if (done) {
                return;
            }
            // One timer per stream, re-armed for the rest of the gap: no task per message on the page streams.
            long quiet = System.nanoTime() - lastMessage;
            if (quiet < limitNanos) {
                armIn(limitNanos - quiet);
                return;
            }
            if (call.closeFromEdge(Status.DEADLINE_EXCEEDED.withDescription(String.format(
                    "%s sent no request message for %d s: the server closed the stream", method,
                    TimeUnit.NANOSECONDS.toSeconds(limitNanos))))) {
                ctx.cancel(null);
            }
        }
    }

    /** Releases the deadline timer when the call ends, and tells the handler of an edge-ended call it was cancelled. */
    private static final class Ending<Q> extends io.grpc.ForwardingServerCallListener.SimpleForwardingServerCallListener<Q> {
        private final SerializedCall<?, ?> call;
        private final Context.CancellableContext ctx;
        private final Silence silence;

        Ending(ServerCall.Listener<Q> delegate, SerializedCall<?, ?> call, Context.CancellableContext ctx,
                Silence silence) {
            super(delegate);
            this.call = call;
            this.ctx = ctx;
            this.silence = silence;
        }

        @Override
        public void onMessage(Q message) {
            if (silence != null) {
                silence.lastMessage = System.nanoTime();
            }
            super.onMessage(message);
        }

        @Override
        public void onHalfClose() {
            if (silence != null) {
                silence.stop();
            }
            super.onHalfClose();
        }

        @Override
        public void onComplete() {
            end();
            if (call.closedByEdge()) {
                super.onCancel();
            } else {
                super.onComplete();
            }
        }

        @Override
        public void onCancel() {
            end();
            super.onCancel();
        }

        private void end() {
            if (silence != null) {
                silence.stop();
            }
            ctx.cancel(null);
        }
    }
}
