package dev.ferry.control.migration;

import dev.ferry.v1.FerryMetadata;
import io.grpc.ClientInterceptor;
import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import io.grpc.stub.MetadataUtils;
import java.security.SecureRandom;
import java.util.Base64;

/**
 * The per-migration session token: issued by the destination in NegotiateMigration, carried as
 * {@code ferry-session-token} metadata on every later call of that migration.
 */
public final class SessionTokens {
    static final Context.Key<String> TOKEN = Context.key("ferry-session-token");
    private static final SecureRandom RANDOM = new SecureRandom();

    private SessionTokens() {}

    /** A fresh unguessable token (256 bits). */
    public static String newToken() {
        byte[] b = new byte[32];
        RANDOM.nextBytes(b);
        return Base64.getUrlEncoder().withoutPadding().encodeToString(b);
    }

    /** Puts the caller's token (or "") into the gRPC context of each call. */
    public static ServerInterceptor serverInterceptor() {
        return new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                    ServerCallHandler<Q, R> next) {
                String t = headers.get(FerryMetadata.SESSION_TOKEN);
                return Contexts.interceptCall(Context.current().withValue(TOKEN, t == null ? "" : t), call, headers, next);
            }
        };
    }

    /** Compared with when there is no session, so a lookup miss costs what a mismatch costs. */
    private static final String NO_SESSION = newToken();

    /**
     * Throws UNAUTHENTICATED unless the current call carries {@code expected}; {@code expected} null (no
     * such migration here) gets the very same answer, so a caller cannot probe which migrations exist.
     * Compared in constant time.
     */
    static void require(String expected) {
        String got = TOKEN.get();
        byte[] want = (expected != null ? expected : NO_SESSION).getBytes(java.nio.charset.StandardCharsets.UTF_8);
        byte[] have = (got == null ? "" : got).getBytes(java.nio.charset.StandardCharsets.UTF_8);
        if (!java.security.MessageDigest.isEqual(have, want) || expected == null) {
            throw Status.UNAUTHENTICATED.withDescription("session token does not match").asRuntimeException();
        }
    }

    /** A client interceptor that attaches {@code token} to every call of a stub. */
    public static ClientInterceptor attach(String token) {
        Metadata m = new Metadata();
        m.put(FerryMetadata.SESSION_TOKEN, token);
        return MetadataUtils.newAttachHeadersInterceptor(m);
    }
}
