package dev.ferry.control.migration;

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

    Channels(TransportSecurity security) {
        this.security = security;
    }

    ManagedChannel get(String address) {
        return channels.computeIfAbsent(address, a -> security.channelBuilder(a)
                .flowControlWindow(FLOW_CONTROL_WINDOW).maxInboundMessageSize(MAX_MESSAGE).build());
    }

    private record DataKey(String address, int connection) {}

    /** The {@code connection}-th page-stream connection to {@code address}; each is its own TCP connection. */
    ManagedChannel data(String address, int connection) {
        return dataChannels.computeIfAbsent(new DataKey(address, connection), k -> security.channelBuilder(address)
                .flowControlWindow(FLOW_CONTROL_WINDOW).maxInboundMessageSize(MAX_MESSAGE).build());
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
