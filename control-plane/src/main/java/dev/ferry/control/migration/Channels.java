package dev.ferry.control.migration;

import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.TimeUnit;

/** One plaintext gRPC channel per peer address, shared by every migration to that peer. */
final class Channels implements AutoCloseable {
    /** Large HTTP/2 windows so page streams are limited by the network, not by window updates. */
    private static final int FLOW_CONTROL_WINDOW = 16 << 20;
    private static final int MAX_MESSAGE = 16 << 20;

    private final ConcurrentMap<String, ManagedChannel> channels = new ConcurrentHashMap<>();

    ManagedChannel get(String address) {
        return channels.computeIfAbsent(address, a -> NettyChannelBuilder.forTarget(a).usePlaintext()
                .flowControlWindow(FLOW_CONTROL_WINDOW).maxInboundMessageSize(MAX_MESSAGE).build());
    }

    @Override
    public void close() {
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
