package dev.ferry.control.vm;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** What the host has in memory, as the kernel reports it: the input to {@link GuestAdmission}'s free check. */
public interface HostMemory {
    /** Bytes the kernel could give to new allocations without swapping (MemAvailable). */
    long availableBytes();

    /** Physical memory (MemTotal). */
    long totalBytes();

    /** Reads /proc/meminfo at every call: admission is rare, and the answer must be current. */
    static HostMemory proc() {
        return new HostMemory() {
            @Override
            public long availableBytes() {
                return field("MemAvailable:");
            }

            @Override
            public long totalBytes() {
                return field("MemTotal:");
            }
        };
    }

    /** A fixed answer, for tests. */
    static HostMemory of(long available, long total) {
        return new HostMemory() {
            @Override
            public long availableBytes() {
                return available;
            }

            @Override
            public long totalBytes() {
                return total;
            }
        };
    }

    private static long field(String key) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
                if (line.startsWith(key)) {
                    String[] f = line.substring(key.length()).trim().split("\\s+");
                    return Long.parseLong(f[0]) * 1024; // the kernel reports kB
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read /proc/meminfo", e);
        }
        throw new IllegalStateException("/proc/meminfo has no " + key);
    }
}
