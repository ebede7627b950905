package dev.ferry.control.migration;

import dev.ferry.control.grpc.FaultTransport;
import dev.ferry.security.TransportSecurity;
import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.netty.channel.EventLoopGroup;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.TimeUnit;

/**
 * One gRPC channel per peer address, shared by every migration to that peer, made by the agent's
 * {@link TransportSecurity}: with TLS each checks that the peer's certificate names a Ferry agent and
 * matches the dialled host.
 */
final class Channels implements AutoCloseable {
    /** Large HTTP/2 windows so page streams are limited by the network, not by window updates. */
    private static final int FLOW_CONTROL_WINDOW = 16 << 20;
    private static final int MAX_MESSAGE = 16 << 20;

    private final ConcurrentMap<String, ManagedChannel> channels = new ConcurrentHashMap<>();
    private final ConcurrentMap<String, ManagedChannel> pagerChannels = new ConcurrentHashMap<>();
    // One event loop for all pager channels, used by nothing else: fault replies never queue behind pages.
    private final EventLoopGroup pagerLoop = FaultTransport.eventLoop("ferry-fault-loop");
    private final TransportSecurity security;

    Channels(TransportSecurity security) {
        this.security = security;
    }

    ManagedChannel get(String address) {
        return channels.computeIfAbsent(address, a -> security.channelBuilder(a)
                .flowControlWindow(FLOW_CONTROL_WINDOW).maxInboundMessageSize(MAX_MESSAGE).build());
    }

    /** Drops the channels to {@code address}, so the next use dials afresh (after a cut link). */
    void reset(String address) {
        ManagedChannel c = channels.remove(address);
        if (c != null) {
            c.shutdownNow();
        }
        c = pagerChannels.remove(address);
        if (c != null) {
            c.shutdownNow();
        }
    }

    /** A channel to a peer's pager listener, on its own event loop, callbacks run on that loop. */
    ManagedChannel pager(String address) {
        return pagerChannels.computeIfAbsent(address, a -> security.channelBuilder(a)
                .eventLoopGroup(pagerLoop).channelType(FaultTransport.channelType()).directExecutor()
                .maxInboundMessageSize(MAX_MESSAGE).build());
    }

    @Override
    public void close() {
        for (ManagedChannel c : pagerChannels.values()) {
            c.shutdownNow();
        }
        pagerLoop.shutdownGracefully(0, 1, TimeUnit.SECONDS);
        for (ManagedChannel c : channels.values()) {
            c.shutdownNow();
        }
        for (ManagedChannel c : channels.values()) {
            try {
                c.awaitTermination(5, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }
}
