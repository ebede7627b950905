package dev.ferry.control.migration;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * One small file per incoming migration in the agent's state directory, written when it is negotiated and removed
 * when it ends. An agent keeps its sessions, guest memory (memfd) and userfaultfd registrations in its own process,
 * so the kernel frees those when it dies; what a restarted agent cannot know from memory is that it was receiving a
 * guest when it died. It finds out here at start, says so in one line per migration, and removes the markers.
 */
final class IncomingMarkers {
    private static final System.Logger LOG = System.getLogger(IncomingMarkers.class.getName());
    private static final String SUFFIX = ".incoming";
    private final Path dir; // null: markers off

    IncomingMarkers(Path dir) {
        this.dir = dir;
    }

    static IncomingMarkers off() {
        return new IncomingMarkers(null);
    }

    /** Reports and removes the markers a previous run of this agent left; returns what they said. */
    List<String> reportLeftovers() {
        List<String> found = new ArrayList<>();
        if (dir == null || !Files.isDirectory(dir)) {
            return found;
        }
        try (DirectoryStream<Path> s = Files.newDirectoryStream(dir, "*" + SUFFIX)) {
            for (Path p : s) {
                String what = Files.readString(p, StandardCharsets.UTF_8).strip();
                found.add(what);
                LOG.log(System.Logger.Level.WARNING, "left by a previous run of this agent, which died while receiving"
                        + " it: {0}; its half-received guest died with that process and never ran here; marker removed",
                        what);
                Files.deleteIfExists(p);
            }
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "cannot read the state directory {0}: {1}", dir, e.getMessage());
        }
        return found;
    }

    void created(String migration, String sourceAddress, String vm) {
        if (dir == null) {
            return;
        }
        try {
            Files.createDirectories(dir);
            Files.writeString(file(migration), "incoming " + migration + " of " + vm + " from " + sourceAddress
                    + ", negotiated " + java.time.Instant.now(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "cannot write a marker for {0} in {1}: {2}", migration, dir,
                    e.getMessage());
        }
    }

    void ended(String migration) {
        if (dir == null) {
            return;
        }
        try {
            Files.deleteIfExists(file(migration));
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "cannot remove the marker of {0}: {1}", migration, e.getMessage());
        }
    }

    private Path file(String migration) {
        // migrations/ID: the ID is [a-z0-9-] (MigrationRequests), safe as a file name
        return dir.resolve(migration.substring(migration.indexOf('/') + 1) + SUFFIX);
    }
}
