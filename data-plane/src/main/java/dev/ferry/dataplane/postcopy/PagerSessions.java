package dev.ferry.dataplane.postcopy;

import java.util.Optional;

/**
 * How {@link PagerServer} finds the migration a PostcopyPagerService call belongs to: by its {@code ferry-session-token}
 * metadata. Called once per call, from gRPC threads.
 */
@FunctionalInterface
public interface PagerSessions {
    /** The source for {@code token}, or empty when no migration has it (the call then fails UNAUTHENTICATED). */
    Optional<PageSource> byToken(String token);
}
