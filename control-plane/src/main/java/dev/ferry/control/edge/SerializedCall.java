package dev.ferry.control.edge;

import io.grpc.ForwardingServerCall;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.Status;

/**
 * A ServerCall that more than one thread may drive: the handler answering, and the edge closing the call from a
 * timer (deadline, silent stream) or from a refused message. ServerCall itself is not thread-safe, so every method
 * is serialized here, and whatever comes after the first close is dropped instead of throwing "call already
 * closed" into a handler that lost the race.
 */
final class SerializedCall<Q, R> extends ForwardingServerCall.SimpleForwardingServerCall<Q, R> {
    private boolean closed;      // guarded by this
    private boolean closedByEdge; // guarded by this

    private SerializedCall(ServerCall<Q, R> delegate) {
        super(delegate);
    }

    static <Q, R> SerializedCall<Q, R> of(ServerCall<Q, R> call) {
        return call instanceof SerializedCall<Q, R> s ? s : new SerializedCall<>(call);
    }

    /** Closes the call with {@code status} unless it is closed already; true if this closed it. */
    synchronized boolean closeFromEdge(Status status) {
        if (closed) {
            return false;
        }
        closed = true;
        closedByEdge = true;
        super.close(status, new Metadata());
        return true;
    }

    /** True when the edge, not the handler, ended the call (the handler should see it as cancelled). */
    synchronized boolean closedByEdge() {
        return closedByEdge;
    }

    @Override
    public synchronized void close(Status status, Metadata trailers) {
        if (!closed) {
            closed = true;
            super.close(status, trailers);
        }
    }

    @Override
    public synchronized void sendHeaders(Metadata headers) {
        if (!closed) {
            super.sendHeaders(headers);
        }
    }

    @Override
    public synchronized void sendMessage(R message) {
        if (!closed) {
            super.sendMessage(message);
        }
    }

    @Override
    public synchronized void request(int numMessages) {
        if (!closed) {
            super.request(numMessages);
        }
    }

    @Override
    public synchronized boolean isReady() {
        return !closed && super.isReady();
    }

    @Override
    public synchronized boolean isCancelled() {
        return closedByEdge || super.isCancelled();
    }
}
