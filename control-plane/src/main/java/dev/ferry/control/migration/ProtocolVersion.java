package dev.ferry.control.migration;

import java.util.Optional;

/**
 * The migration protocol's version, exchanged in NegotiateMigration. An agent speaks its own version and the one
 * before it, so agents one release apart migrate both ways during a rolling upgrade.
 *
 * <p>1: the protocol before the field existed (absent on the wire): the destination compares the memory digest
 * in CompleteIncomingMigration, before it resumes the VM, and that is all; no VerifyIncomingMigration or
 * CommitIncomingMigration. 2: adds the verification after the resume (feature MEMORY_DIGEST accepted, the
 * destination keeps the source paused until the source commits or rolls back).
 */
public final class ProtocolVersion {
    public static final int CURRENT = 2;
    public static final int OLDEST = 1;

    private ProtocolVersion() {}

    /** The version a peer speaks: an absent field is a peer from before it existed, version 1. */
    public static int ofWire(boolean present, int value) {
        return present ? value : 1;
    }

    /**
     * Why {@code local} cannot speak with {@code peer}, or empty when the two share a version: each speaks its own
     * and the one before, so they share one when they are at most one apart (a newer peer speaks ours too).
     */
    public static Optional<String> refusal(int local, int peer) {
        int lowest = Math.max(OLDEST, local - 1);
        if (peer < lowest || peer > local + 1) {
            return Optional.of("protocol version " + peer + " shares no version with this agent, which speaks "
                    + lowest + ".." + local + " (peers of versions " + lowest + ".." + (local + 1) + " can migrate)");
        }
        return Optional.empty();
    }

    /** The version both speak: the older of the two. */
    public static int common(int local, int peer) {
        return Math.min(local, peer);
    }

    /** Whether the destination keeps the source paused for VerifyIncomingMigration / CommitIncomingMigration. */
    public static boolean verifiesAfterResume(int version) {
        return version >= 2;
    }

    /** Checks an injected version (tests, compatibility drills): within what this build can speak. */
    public static int requireSpeakable(int version) {
        if (version < OLDEST || version > CURRENT) {
            throw new IllegalArgumentException("protocol version " + version + " is not one this build speaks ("
                    + OLDEST + ".." + CURRENT + ")");
        }
        return version;
    }
}
