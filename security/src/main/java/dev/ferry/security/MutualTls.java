package dev.ferry.security;

import io.grpc.ServerInterceptor;
import io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.shaded.io.grpc.netty.NegotiationType;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.netty.shaded.io.netty.handler.ssl.ClientAuth;
import io.grpc.netty.shaded.io.netty.handler.ssl.OpenSsl;
import io.grpc.netty.shaded.io.netty.handler.ssl.OpenSslSessionContext;
import io.grpc.netty.shaded.io.netty.handler.ssl.SslContext;
import io.grpc.netty.shaded.io.netty.handler.ssl.SslContextBuilder;
import io.grpc.netty.shaded.io.netty.handler.ssl.SslProvider;
import java.io.IOException;
import java.net.SocketAddress;
import java.util.List;

/**
 * Mutual TLS on BoringSSL (the OpenSSL provider grpc-netty-shaded ships), TLS 1.3 and 1.2 with AES-GCM
 * suites only: the CPUs this runs on have AES-NI, which makes AES-GCM the cheapest authenticated
 * cipher for page streams. One server and one client context; their key and trust managers re-read
 * the PEM files when they change.
 */
final class MutualTls implements TransportSecurity {
    static final List<String> PROTOCOLS = List.of("TLSv1.3", "TLSv1.2");
    static final List<String> CIPHERS = List.of(
            "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384");

    private final SslContext server;
    private final SslContext client;
    private final ServerInterceptor authorization = new RoleAuthorization(MethodRoles.ferry(),
            RoleAuthorization.fromTlsSession());

    MutualTls(TlsFiles files) throws IOException {
        if (!OpenSsl.isAvailable()) {
            throw new IOException("TLS: BoringSSL (grpc-netty-shaded's tcnative) does not load here: "
                    + OpenSsl.unavailabilityCause());
        }
        ReloadingKeyManager keys = new ReloadingKeyManager(files.cert(), files.key());
        server = GrpcSslContexts.configure(SslContextBuilder.forServer(keys), SslProvider.OPENSSL)
                .trustManager(new ReloadingTrustManager(files.ca(), null)).clientAuth(ClientAuth.REQUIRE)
                .protocols(PROTOCOLS).ciphers(CIPHERS).build();
        client = GrpcSslContexts.configure(SslContextBuilder.forClient(), SslProvider.OPENSSL).keyManager(keys)
                .trustManager(new ReloadingTrustManager(files.ca(), Role.AGENT))
                .protocols(PROTOCOLS).ciphers(CIPHERS).build();
        // No session resumption: a resumed session keeps the identity of the certificate it began with, so
        // a rotated (or distrusted) certificate would go on being accepted. Channels are long-lived; the
        // full handshake costs once per connection.
        ((OpenSslSessionContext) server.sessionContext()).setSessionCacheEnabled(false);
        ((OpenSslSessionContext) client.sessionContext()).setSessionCacheEnabled(false);
    }

    @Override
    public boolean tls() {
        return true;
    }

    @Override
    public NettyServerBuilder serverBuilder(SocketAddress address) {
        return NettyServerBuilder.forAddress(address).sslContext(server);
    }

    @Override
    public ServerInterceptor authorization() {
        return authorization;
    }

    @Override
    public NettyChannelBuilder channelBuilder(String target) {
        return NettyChannelBuilder.forTarget(target).negotiationType(NegotiationType.TLS).sslContext(client);
    }
}
