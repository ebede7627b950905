package dev.ferry.control.migration;

import dev.ferry.control.client.ReadRetries;
import dev.ferry.control.grpc.FaultTransport;
import dev.ferry.security.TransportSecurity;
import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.netty.channel.EventLoopGroup;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.TimeUnit;

/**
 * gRPC channels to peers, shared by every migration to that peer, made by the agent's {@link TransportSecurity}:
 * with TLS each checks that the peer's certificate names a Ferry agent and matches the dialled host. Control calls
 * use one channel per address; page streams use one connection each ({@link #data}), because one HTTP/2
 * connection is served by one event-loop thread on each side, and with TLS that thread's encryption (or
 * decryption) capped page throughput at about 0.65-0.8 of plaintext where four connections reach 0.8-1.0
 * (docs/measurements.md, ferry bench).
 */
final class Channels implements AutoCloseable {
    /** Large HTTP/2 windows so page streams are limited by the network, not by window updates. */
    private static final int FLOW_CONTROL_WINDOW = 16 << 20;
    private static final int MAX_MESSAGE = 16 << 20;

    private final ConcurrentMap<String, ManagedChannel> channels = new ConcurrentHashMap<>();
    private final ConcurrentMap<DataKey, ManagedChannel> dataChannels = new ConcurrentHashMap<>();
    private final ConcurrentMap<String, ManagedChannel> pagerChannels = new ConcurrentHashMap<>();
    // One event loop for all pager channels, used by nothing else: fault replies never queue behind pages.
    private final EventLoopGroup pagerLoop = FaultTransport.eventLoop("ferry-fault-loop");
    private final TransportSecurity security;
    private final io.grpc.ClientInterceptor tracing;

    /** Channels made by {@code security}; every call on them goes through {@code tracing} (trace context). */
    Channels(TransportSecurity security, io.grpc.ClientInterceptor tracing) {
        this.security = security;
        this.tracing = tracing;
    }

    ManagedChannel get(String address) {
        return channels.computeIfAbsent(address, a -> ReadRetries.apply(security.channelBuilder(a)).intercept(tracing)
                .flowControlWindow(FLOW_CONTROL_WINDOW).maxInboundMessageSize(MAX_MESSAGE).build());
    }

    private record DataKey(String address, int connection) {}

    /** The {@code connection}-th page-stream connection to {@code address}; each is its own TCP connection. */
    ManagedChannel data(String address, int connection) {
        return dataChannels.computeIfAbsent(new DataKey(address, connection), k -> security.channelBuilder(address).intercept(tracing)
                .flowControlWindow(FLOW_CONTROL_WINDOW).maxInboundMessageSize(MAX_MESSAGE).build());
    }

    /**
     * As {@link #fresh}, for {@code streams} page streams: stream i on its own connection to address i mod n (see
     * {@link #data}). All are dialled before any is waited for, so their TLS handshakes overlap.
     */
    List<ManagedChannel> freshData(List<String> addresses, int streams) {
        List<ManagedChannel> perStream = new ArrayList<>(streams);
        for (int i = 0; i < streams; i++) {
            ManagedChannel c = data(addresses.get(i % addresses.size()), i / addresses.size());
            c.getState(true); // starts connecting
            perStream.add(c);
        }
        perStream.forEach(Channels::awaitReady);
        return perStream;
    }

    /** How long a new migration or a resume waits for a connection before its first call fails. */
    static final java.time.Duration CONNECT_WAIT = java.time.Duration.ofSeconds(5);

    /**
     * The channel to {@code address}, connected if that happens within {@link #CONNECT_WAIT}. A new migration or a
     * resume must not fail on the memory of an earlier lost link: a channel that lost its connection keeps failing
     * calls at once while it waits out a reconnect backoff, or while an attempt made during the outage fails.
     * Dialled again at once here; a peer that is really gone still fails the first call, a few seconds later.
     */
    ManagedChannel fresh(String address) {
        return awaitReady(get(address));
    }

    /**
     * The channel to {@code address}, redialling at once if it waits out a reconnect backoff, without waiting for
     * the connection: for liveness probes, whose call then learns what the peer says now, not what it said last.
     */
    ManagedChannel redial(String address) {
        ManagedChannel c = get(address);
        if (c.getState(false) == io.grpc.ConnectivityState.TRANSIENT_FAILURE) {
            c.resetConnectBackoff();
        }
        return c;
    }

    /** As {@link #fresh}, for a pager channel. */
    ManagedChannel freshPager(String address) {
        return awaitReady(pager(address));
    }

    private static ManagedChannel awaitReady(ManagedChannel c) {
        long deadline = System.nanoTime() + CONNECT_WAIT.toNanos();
        io.grpc.ConnectivityState s = c.getState(true);
        try {
            while (s != io.grpc.ConnectivityState.READY && s != io.grpc.ConnectivityState.SHUTDOWN) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                if (s == io.grpc.ConnectivityState.TRANSIENT_FAILURE) {
                    c.resetConnectBackoff();
                }
                java.util.concurrent.CountDownLatch changed = new java.util.concurrent.CountDownLatch(1);
                c.notifyWhenStateChanged(s, changed::countDown);
                changed.await(left, TimeUnit.NANOSECONDS);
                s = c.getState(true);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return c;
    }

    /** Drops the channels to {@code address}, so the next use dials afresh (after a cut link). */
    void reset(String address) {
        ManagedChannel c = channels.remove(address);
        if (c != null) {
            c.shutdownNow();
        }
        dataChannels.keySet().removeIf(k -> {
            if (!k.address().equals(address)) {
                return false;
            }
            ManagedChannel d = dataChannels.get(k);
            if (d != null) {
                d.shutdownNow();
            }
            return true;
        });
        c = pagerChannels.remove(address);
        if (c != null) {
            c.shutdownNow();
        }
    }

    /** A channel to a peer's pager listener, on its own event loop, callbacks run on that loop. */
    ManagedChannel pager(String address) {
        return pagerChannels.computeIfAbsent(address, a -> security.channelBuilder(a).intercept(tracing)
                .eventLoopGroup(pagerLoop).channelType(FaultTransport.channelType()).directExecutor()
                .maxInboundMessageSize(MAX_MESSAGE).build());
    }

    @Override
    public void close() {
        for (ManagedChannel c : pagerChannels.values()) {
            c.shutdownNow();
        }
        pagerLoop.shutdownGracefully(0, 1, TimeUnit.SECONDS);
        List<ManagedChannel> all = new ArrayList<>(channels.values());
        all.addAll(dataChannels.values());
        for (ManagedChannel c : all) {
            c.shutdownNow();
        }
        for (ManagedChannel c : all) {
            try {
                c.awaitTermination(5, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }
}
