package dev.ferry.linux;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Pattern;

/** The process's open fds (/proc/self/fd → link target) and kvm/memfd mappings, for leak checks. */
public record FdSnapshot(Map<Integer, String> fds, List<String> nativeMappings) {
    /** Link targets / mapping names the bindings create: KVM anon inodes, memfds, userfaultfds, eventfds. */
    public static final Pattern OURS = Pattern.compile("kvm|memfd:|userfaultfd|eventfd");

    public static FdSnapshot take() {
        Map<Integer, String> fds = new TreeMap<>();
        try (DirectoryStream<Path> dir = Files.newDirectoryStream(Path.of("/proc/self/fd"))) {
            for (Path p : dir) {
                String target;
                try {
                    target = Files.readSymbolicLink(p).toString();
                } catch (IOException e) {
                    continue; // the fd of the directory stream itself, or closed meanwhile
                }
                fds.put(Integer.parseInt(p.getFileName().toString()), target);
            }
            List<String> maps = new ArrayList<>();
            for (String line : Files.readAllLines(Path.of("/proc/self/maps"))) {
                if (OURS.matcher(line).find()) {
                    maps.add(line);
                }
            }
            return new FdSnapshot(fds, maps);
        } catch (IOException e) {
            throw new IllegalStateException("cannot list /proc/self/fd", e);
        }
    }

    /** Entries of this snapshot whose target matches {@link #OURS} and that were not open in {@code before}. */
    public List<String> leakedSince(FdSnapshot before) {
        List<String> leaked = new ArrayList<>();
        fds.forEach((fd, target) -> {
            if (OURS.matcher(target).find() && !target.equals(before.fds.get(fd))) {
                leaked.add(fd + " -> " + target);
            }
        });
        for (String m : nativeMappings) {
            if (!before.nativeMappings.contains(m)) {
                leaked.add("mapping " + m);
            }
        }
        return leaked;
    }

    public int count() {
        return fds.size();
    }

    /**
     * Fds of the kinds native bindings create (anon inodes such as kvm-vm / [userfaultfd] /
     * [eventfd], memfds, /dev/kvm, /dev/userfaultfd). JVM-internal fds (jars, pipes, sockets of the
     * test launcher) come and go on their own, so leak checks compare this count.
     */
    public long nativeCount() {
        return fds.values().stream()
                .filter(t -> t.startsWith("anon_inode:") || t.startsWith("/memfd:") || t.startsWith("/dev/kvm")
                        || t.startsWith("/dev/userfaultfd"))
                .count();
    }
}
