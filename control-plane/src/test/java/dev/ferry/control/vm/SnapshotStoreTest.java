package dev.ferry.control.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Snapshot paths resolve inside the agent's snapshot directory and nowhere else. */
class SnapshotStoreTest {
    @TempDir
    Path tmp;

    private static Status.Code refused(SnapshotStore s, String path) {
        return assertThrows(StatusRuntimeException.class, () -> s.resolve("snapshot_directory", path)).getStatus().getCode();
    }

    @Test
    void relativeAndAbsolutePathsInsideResolve() {
        SnapshotStore s = SnapshotStore.at(tmp.resolve("snaps"));
        assertEquals(tmp.resolve("snaps/a/b"), s.resolve("snapshot_directory", "a/b"));
        assertEquals(tmp.resolve("snaps/c"), s.resolve("snapshot_directory", tmp.resolve("snaps/c").toString()));
        assertTrue(Files.isDirectory(tmp.resolve("snaps")), "created on first use");
    }

    @Test
    void pathsOutsideAreRefused() throws Exception {
        SnapshotStore s = SnapshotStore.at(tmp.resolve("snaps"));
        assertEquals(Status.Code.INVALID_ARGUMENT, refused(s, "/etc/passwd"));
        assertEquals(Status.Code.INVALID_ARGUMENT, refused(s, tmp.resolve("snaps").toString()), "the root itself");
        assertEquals(Status.Code.INVALID_ARGUMENT, refused(s, tmp.resolve("snapsX/a").toString()), "a sibling prefix");
        assertEquals(Status.Code.INVALID_ARGUMENT, refused(s, "a/../../x"));
        Files.createDirectories(tmp.resolve("outside"));
        Files.createDirectories(tmp.resolve("snaps"));
        Files.createSymbolicLink(tmp.resolve("snaps/link"), tmp.resolve("outside"));
        assertEquals(Status.Code.INVALID_ARGUMENT, refused(s, "link/x"), "through a symbolic link");
    }

    @Test
    void anAgentWithoutASnapshotDirectoryRefuses() {
        assertEquals(Status.Code.FAILED_PRECONDITION, refused(SnapshotStore.none(), "a"));
    }
}
