package dev.ferry.security;

import io.grpc.ServerInterceptor;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import java.io.IOException;
import java.net.SocketAddress;

/**
 * How an agent's listeners and every client that dials an agent protect their connections: mutual
 * TLS (the default) or, only when asked for with {@code --insecure}, plaintext. Every listener and
 * every channel in Ferry is made here, so there is no other way to get a plaintext one.
 */
public interface TransportSecurity {
    /** True for mutual TLS. */
    boolean tls();

    /** A server builder for {@code address} with this transport's credentials. */
    NettyServerBuilder serverBuilder(SocketAddress address);

    /**
     * The authorization every service of a listener runs first (add it as the builder's last
     * interceptor): with TLS, by the role of the client certificate's identity; in plaintext only
     * methods missing from the table are refused, since nobody is authenticated.
     */
    ServerInterceptor authorization();

    /**
     * A channel builder to an agent at {@code target} (host:port). With TLS it presents this party's
     * certificate, checks the agent's against the dialled host (SAN DNS or IP) and requires it to
     * name a Ferry agent.
     */
    NettyChannelBuilder channelBuilder(String target);

    /** Mutual TLS with the given files, re-read when they change. */
    static TransportSecurity mutualTls(TlsFiles files) throws IOException {
        return new MutualTls(files.requireReadable());
    }

    /** Plaintext without authentication: for trying Ferry on a trusted host only. */
    static TransportSecurity insecure() {
        return Plaintext.INSTANCE;
    }
}
