package dev.ferry.security;

import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.util.Optional;
import java.util.Set;

/**
 * Refuses a call before any handler runs unless the caller's identity has a role the
 * {@link MethodRoles} table allows for the method: UNAUTHENTICATED when the caller has no Ferry
 * identity, PERMISSION_DENIED for the wrong role or a method missing from the table.
 */
public final class RoleAuthorization implements ServerInterceptor {
    private static final System.Logger LOG = System.getLogger(RoleAuthorization.class.getName());

    /** Finds the caller's identity from what the transport knows about the call. */
    @FunctionalInterface
    public interface IdentityResolver {
        /** Empty when the caller has no identity Ferry recognises. */
        Optional<PeerIdentity> identify(ServerCall<?, ?> call);
    }

    private final MethodRoles table;
    private final IdentityResolver resolver; // null: plaintext, nobody is authenticated

    public RoleAuthorization(MethodRoles table, IdentityResolver resolver) {
        this.table = java.util.Objects.requireNonNull(table);
        this.resolver = java.util.Objects.requireNonNull(resolver);
    }

    private RoleAuthorization(MethodRoles table) {
        this.table = table;
        this.resolver = null;
    }

    /** For plaintext listeners ({@code --insecure}): no identities to judge, but unlisted methods stay closed. */
    static RoleAuthorization listedMethodsOnly(MethodRoles table) {
        return new RoleAuthorization(table);
    }

    /** Identities from the verified client certificate of the call's TLS session. */
    public static IdentityResolver fromTlsSession() {
        return call -> PeerIdentity.of(call.getAttributes().get(io.grpc.Grpc.TRANSPORT_ATTR_SSL_SESSION));
    }

    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
            ServerCallHandler<Q, R> next) {
        String method = call.getMethodDescriptor().getFullMethodName();
        Optional<Set<Role>> allowed = table.rolesFor(method);
        if (allowed.isEmpty()) {
            return refuse(call, Status.PERMISSION_DENIED.withDescription(method + " is not open to any caller"));
        }
        if (resolver == null) {
            return next.startCall(call, headers);
        }
        Optional<PeerIdentity> who = resolver.identify(call);
        if (who.isEmpty()) {
            return refuse(call, Status.UNAUTHENTICATED.withDescription(
                    "no Ferry identity: the client certificate must carry one spiffe://ferry.dev/ROLE/NAME URI"));
        }
        if (!allowed.get().contains(who.get().role())) {
            LOG.log(System.Logger.Level.WARNING, "refused {0} to {1}", method, who.get());
            return refuse(call, Status.PERMISSION_DENIED.withDescription(
                    "role " + who.get().role().segment() + " may not call " + method));
        }
        return next.startCall(call, headers);
    }

    private static <Q, R> ServerCall.Listener<Q> refuse(ServerCall<Q, R> call, Status status) {
        call.close(status, new Metadata());
        return new ServerCall.Listener<>() { };
    }
}
