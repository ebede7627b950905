package dev.ferry.control.migration;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.Objects;

/**
 * Points where an agent stops a migration until a test releases it, so a fault can be injected in a phase too
 * short to hit by timing (the fault-matrix tests). Tests only, set with the hidden {@code ferry agent
 * --fault-hold-dir DIR}: on reaching POINT while {@code DIR/POINT.hold} exists, the agent creates {@code
 * DIR/POINT.reached} and waits until {@code DIR/POINT.release} exists (at most {@link #MAX_HOLD}). Files, so one
 * agent can serve many test cases, each arming the point it needs. Never applied to warm-up migrations.
 */
public final class FaultHold {
    /** Where a migration can be held. */
    public enum Point {
        /** Destination, in NegotiateMigration before it answers: the source shows NEGOTIATING. */
        NEGOTIATE,
        /** Source, right after it paused the guest for the last round: STOP_AND_COPY. */
        STOP_AND_COPY,
        /** Source, before it sends device state: DEVICE_STATE. */
        DEVICE_STATE,
        /** Source, with the guest running on the destination, before the memory comparison: VERIFYING. */
        COMPLETING;

        /** The file names' stem: {@code negotiate}, {@code stop-and-copy}, {@code device-state}, {@code completing}. */
        public String cliName() {
            return name().toLowerCase(Locale.ROOT).replace('_', '-');
        }
    }

    /** Holds nothing: every production agent. */
    public static final FaultHold NONE = new FaultHold(null);
    /** A hold never outlasts this: a test that forgot to release must not leave an agent stuck for ever. */
    static final Duration MAX_HOLD = Duration.ofMinutes(5);
    private static final System.Logger LOG = System.getLogger(FaultHold.class.getName());

    private final Path dir;

    private FaultHold(Path dir) {
        this.dir = dir;
    }

    /** Holds at every point armed by a file in {@code dir}. */
    public static FaultHold in(Path dir) {
        return new FaultHold(Objects.requireNonNull(dir, "dir"));
    }

    /** Holds {@code migration} here if a test armed this point; returns at once otherwise. */
    void reached(Point here, String migration) {
        if (dir == null || migration.contains(MigrationServices.WARMUP_ID_PREFIX)
                || !Files.exists(dir.resolve(here.cliName() + ".hold"))) {
            return;
        }
        Path reached = dir.resolve(here.cliName() + ".reached");
        Path release = dir.resolve(here.cliName() + ".release");
        try {
            Files.writeString(reached, migration);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "fault hold: cannot write {0}: {1}", reached, e.getMessage());
            return;
        }
        LOG.log(System.Logger.Level.WARNING, "{0}: fault hold at {1} until {2} exists", migration, here.cliName(), release);
        long deadline = System.nanoTime() + MAX_HOLD.toNanos();
        try {
            // A file is the only channel a test shares with an agent process; poll it briefly.
            while (!Files.exists(release) && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        LOG.log(System.Logger.Level.WARNING, "{0}: fault hold at {1} released", migration, here.cliName());
    }
}
