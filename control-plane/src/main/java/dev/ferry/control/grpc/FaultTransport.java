package dev.ferry.control.grpc;

import dev.ferry.linux.ThreadPriority;
import io.grpc.netty.shaded.io.netty.channel.EventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.ServerChannel;
import io.grpc.netty.shaded.io.netty.channel.epoll.Epoll;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollEventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollServerSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.nio.NioEventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.socket.nio.NioServerSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.socket.nio.NioSocketChannel;

/**
 * The transport of the postcopy fault path (the source's pager listener and the destination's pager
 * channels): one event loop of its own at latency-critical priority, on Netty's native epoll transport
 * where it loads (fewer system calls per message than NIO), else NIO.
 */
public final class FaultTransport {
    private static final boolean EPOLL = Epoll.isAvailable();

    private FaultTransport() {}

    /** A single-thread event loop named {@code name}. */
    public static EventLoopGroup eventLoop(String name) {
        return EPOLL ? new EpollEventLoopGroup(1, ThreadPriority.latencyCritical(name))
                : new NioEventLoopGroup(1, ThreadPriority.latencyCritical(name));
    }

    public static Class<? extends io.grpc.netty.shaded.io.netty.channel.Channel> channelType() {
        return EPOLL ? EpollSocketChannel.class : NioSocketChannel.class;
    }

    public static Class<? extends ServerChannel> serverChannelType() {
        return EPOLL ? EpollServerSocketChannel.class : NioServerSocketChannel.class;
    }
}
