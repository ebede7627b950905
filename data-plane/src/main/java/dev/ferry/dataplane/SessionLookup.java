package dev.ferry.dataplane;

import java.util.Optional;

/**
 * How {@link PageTransferServer} finds the incoming migration a StreamPages call belongs to: by the value of its
 * {@code ferry-session-token} metadata. The control plane registers a session when it accepts a migration
 * (NegotiateMigration) and removes it when the migration ends. Called once per StreamPages call, from gRPC threads.
 */
@FunctionalInterface
public interface SessionLookup {
    /** The session for {@code token}, or empty when no migration has that token (the call then fails UNAUTHENTICATED). */
    Optional<IncomingPages> byToken(String token);
}
