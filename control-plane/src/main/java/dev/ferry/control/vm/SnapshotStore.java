package dev.ferry.control.vm;

import dev.ferry.control.edge.BoundedText;
import dev.ferry.control.edge.Fields;
import io.grpc.Status;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Pattern;

/**
 * The one directory on the agent's host where SnapshotVm writes and RestoreVm reads. A caller names a snapshot
 * relative to it (or by an absolute path inside it); nothing outside it is ever opened, so a controller cannot use
 * snapshots to read or overwrite the host's files.
 */
public final class SnapshotStore {
    /** Plain relative or absolute paths: no spaces, quotes, backslashes or control characters. */
    private static final Pattern PATH = Pattern.compile("[A-Za-z0-9._/-]{1,255}");

    private final Path root; // null: this agent takes no snapshots

    private SnapshotStore(Path root) {
        this.root = root;
    }

    /** An agent without a snapshot directory: snapshot RPCs are refused with FAILED_PRECONDITION. */
    public static SnapshotStore none() {
        return new SnapshotStore(null);
    }

    /** Snapshots under {@code root}, created on first use. */
    public static SnapshotStore at(Path root) {
        return new SnapshotStore(root.toAbsolutePath().normalize());
    }

    /** The edge check: INVALID_ARGUMENT unless {@code value} is a plausible path. */
    static void checkSyntax(String field, String value) {
        if (value.isEmpty()) {
            throw Fields.invalid(field + " is required");
        }
        if (!PATH.matcher(value).matches()) {
            throw Fields.invalid(field + " " + BoundedText.quote(value)
                    + " must be 1 to 255 characters of [A-Za-z0-9._/-]");
        }
        for (String part : value.split("/")) {
            if (part.equals("..")) {
                throw Fields.invalid(field + " " + BoundedText.quote(value) + " must not contain \"..\"");
            }
        }
    }

    /**
     * The absolute path {@code value} names inside the snapshot directory: INVALID_ARGUMENT when it points outside
     * (also through a symbolic link), FAILED_PRECONDITION when this agent has no snapshot directory.
     */
    Path resolve(String field, String value) {
        checkSyntax(field, value);
        if (root == null) {
            throw Status.FAILED_PRECONDITION.withDescription("this agent has no snapshot directory (ferry agent "
                    + "--snapshot-dir DIR)").asRuntimeException();
        }
        Path p = root.resolve(value).normalize();
        if (!p.startsWith(root) || p.equals(root)) {
            throw Fields.invalid(field + " " + BoundedText.quote(value) + " is not inside the agent's snapshot directory "
                    + root);
        }
        try {
            Files.createDirectories(root);
            Path realRoot = root.toRealPath();
            Path existing = p;
            while (existing != null && !Files.exists(existing)) {
                existing = existing.getParent();
            }
            if (existing == null || !existing.toRealPath().startsWith(realRoot)) {
                throw Fields.invalid(field + " " + BoundedText.quote(value) + " leads out of the agent's snapshot "
                        + "directory " + root);
            }
        } catch (IOException e) {
            throw Status.FAILED_PRECONDITION.withDescription("snapshot directory " + root + " is unusable: "
                    + e.getMessage()).asRuntimeException();
        }
        return p;
    }
}
