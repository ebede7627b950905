package dev.ferry.control.migration;

import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;

/** A clock that moves only when told to. */
final class FakeClock implements InstantSource {
    static final Instant EPOCH = Instant.parse("2025-06-01T12:00:00Z");

    private Instant now = EPOCH;

    @Override
    public Instant instant() {
        return now;
    }

    FakeClock advance(Duration d) {
        now = now.plus(d);
        return this;
    }

    FakeClock advanceMillis(long ms) {
        return advance(Duration.ofMillis(ms));
    }

    /** Time since {@link #EPOCH}. */
    Duration sinceEpoch() {
        return Duration.between(EPOCH, now);
    }
}
