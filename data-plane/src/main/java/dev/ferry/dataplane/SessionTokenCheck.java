package dev.ferry.dataplane;

import dev.ferry.v1.FerryMetadata;
import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.Objects;
import java.util.Optional;

/**
 * Resolves a call's {@code ferry-session-token} metadata to its session before the handler runs and puts
 * the session in the call's Context under {@code key}. A call without a token, with an unknown one, or
 * whose session refuses it is closed before any message is read, let alone written to guest memory.
 *
 * @param <S> what a token resolves to
 */
public final class SessionTokenCheck<S> implements ServerInterceptor {
    /** Maps a token to its session, empty if unknown; may throw a StatusRuntimeException to refuse the call. */
    @FunctionalInterface
    public interface Resolver<S> {
        Optional<S> byToken(String token);
    }

    private final Resolver<S> resolver;
    private final Context.Key<S> key;
    private final String unknownToken;

    /** {@code unknownToken}: the end of the UNAUTHENTICATED message for a token no session has. */
    public SessionTokenCheck(Resolver<S> resolver, Context.Key<S> key, String unknownToken) {
        this.resolver = Objects.requireNonNull(resolver, "resolver");
        this.key = Objects.requireNonNull(key, "key");
        this.unknownToken = Objects.requireNonNull(unknownToken, "unknownToken");
    }

    @Override
    public <ReqT, RespT> ServerCall.Listener<ReqT> interceptCall(ServerCall<ReqT, RespT> call, Metadata headers,
            ServerCallHandler<ReqT, RespT> next) {
        String token = headers.get(FerryMetadata.SESSION_TOKEN);
        if (token == null || token.isEmpty()) {
            return reject(call, Status.UNAUTHENTICATED.withDescription(
                    "missing " + FerryMetadata.SESSION_TOKEN_HEADER + " metadata"));
        }
        Optional<S> session;
        try {
            session = resolver.byToken(token);
        } catch (StatusRuntimeException e) {
            return reject(call, e.getStatus());
        } catch (RuntimeException e) {
            return reject(call, Status.INTERNAL.withDescription("session lookup failed").withCause(e));
        }
        if (session == null || session.isEmpty()) {
            return reject(call, Status.UNAUTHENTICATED.withDescription(
                    "unknown " + FerryMetadata.SESSION_TOKEN_HEADER + ": " + unknownToken));
        }
        return Contexts.interceptCall(Context.current().withValue(key, session.get()), call, headers, next);
    }

    /** Closes the call without requesting any message, so nothing is parsed. */
    private static <ReqT, RespT> ServerCall.Listener<ReqT> reject(ServerCall<ReqT, RespT> call, Status status) {
        call.close(status, new Metadata());
        return new ServerCall.Listener<>() { };
    }
}
