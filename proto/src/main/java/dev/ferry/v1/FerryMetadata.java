package dev.ferry.v1;

import io.grpc.Metadata;

/**
 * gRPC metadata keys of the ferry.v1 contract. The .proto files document when each is required; this class only
 * spells the names once so that clients and servers cannot drift apart.
 */
public final class FerryMetadata {
    /** Name of the session-token header; see {@link #SESSION_TOKEN}. */
    public static final String SESSION_TOKEN_HEADER = "ferry-session-token";

    /**
     * The per-migration session token issued by {@code NegotiateMigration} ({@link NegotiateMigrationResponse#getSessionToken()}).
     * Every later call of that migration carries it: the source's incoming-side calls and {@code StreamPages} on the
     * destination, and the destination's {@code PostcopyPagerService} calls on the source. A missing or unknown token
     * fails the call with {@code UNAUTHENTICATED}.
     */
    public static final Metadata.Key<String> SESSION_TOKEN =
            Metadata.Key.of(SESSION_TOKEN_HEADER, Metadata.ASCII_STRING_MARSHALLER);

    private FerryMetadata() {
    }
}
