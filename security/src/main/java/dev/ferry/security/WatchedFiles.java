package dev.ferry.security;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.Arrays;
import java.util.List;

/**
 * Notices that files changed since the last look: a stat per file (modification time, size, inode),
 * cheap enough to do on every TLS handshake, so rotated certificates are used without a restart.
 */
final class WatchedFiles {
    private final List<Path> files;
    private Object[] seen; // guarded by this

    WatchedFiles(Path... files) {
        this.files = List.of(files);
    }

    /** True the first time and whenever a file's stamp differs from the last call's. */
    synchronized boolean changed() {
        Object[] now = new Object[files.size()];
        for (int i = 0; i < now.length; i++) {
            now[i] = stamp(files.get(i));
        }
        if (Arrays.equals(now, seen)) {
            return false;
        }
        seen = now;
        return true;
    }

    private static Object stamp(Path p) {
        try {
            BasicFileAttributes a = Files.readAttributes(p, BasicFileAttributes.class);
            return List.of(a.lastModifiedTime().toMillis(), a.size(), String.valueOf(a.fileKey()));
        } catch (IOException e) {
            return "missing";
        }
    }
}
