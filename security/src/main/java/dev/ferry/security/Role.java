package dev.ferry.security;

import java.util.Locale;
import java.util.Optional;

/**
 * What a peer may do, named by the path of the SPIFFE ID in its certificate
 * ({@code spiffe://ferry.dev/ROLE/NAME}). See {@link MethodRoles} for what each role may call.
 */
public enum Role {
    /** A Ferry agent: the agent-to-agent migration calls, page transfer and the postcopy pager. */
    AGENT,
    /** A cloud controller or a person with the CLI: the public VM and migration calls. */
    CONTROLLER,
    /** The Kubernetes operator: the same public calls as a controller. */
    OPERATOR;

    /** The path segment of this role in a SPIFFE ID. */
    public String segment() {
        return name().toLowerCase(Locale.ROOT);
    }

    static Optional<Role> ofSegment(String s) {
        for (Role r : values()) {
            if (r.segment().equals(s)) {
                return Optional.of(r);
            }
        }
        return Optional.empty();
    }
}
