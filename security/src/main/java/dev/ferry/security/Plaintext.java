package dev.ferry.security;

import io.grpc.ServerInterceptor;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import java.net.SocketAddress;

/** {@code --insecure}: no TLS, no identities. */
final class Plaintext implements TransportSecurity {
    static final Plaintext INSTANCE = new Plaintext();

    private Plaintext() {}

    @Override
    public boolean tls() {
        return false;
    }

    @Override
    public NettyServerBuilder serverBuilder(SocketAddress address) {
        return NettyServerBuilder.forAddress(address);
    }

    @Override
    public ServerInterceptor authorization() {
        return RoleAuthorization.listedMethodsOnly(MethodRoles.ferry());
    }

    @Override
    public NettyChannelBuilder channelBuilder(String target) {
        return NettyChannelBuilder.forTarget(target).usePlaintext();
    }
}
