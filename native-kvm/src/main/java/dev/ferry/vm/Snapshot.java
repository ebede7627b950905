package dev.ferry.vm;

import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateCodec;
import dev.ferry.state.StateException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.function.Consumer;

/**
 * A snapshot on disk: {@code memory.bin} (guest RAM in guest-physical order), {@code state.bin}
 * (the device-state sections, see state-serializers) and {@code snapshot.properties} (sizes and a
 * digest of the memory, checked before anything is restored, and the VM's labels).
 *
 * <p>The manifest is at {@code format=1}. Readers ignore keys they do not know, so an optional key (as the
 * {@code label.KEY=VALUE} entries) is added without a new format: a snapshot without it reads as having none, and an
 * older build still restores a newer snapshot, without what it does not know. The format changes only for what an
 * older reader would get wrong.
 */
public final class Snapshot {
    public static final String MEMORY_FILE = "memory.bin";
    public static final String STATE_FILE = "state.bin";
    public static final String MANIFEST_FILE = "snapshot.properties";
    private static final String LABEL_PREFIX = "label.";
    private static final int CHUNK = 64 << 20;

    private Snapshot() {}

    /**
     * Writes a snapshot of a paused {@code vm} into {@code dir} (created if needed). The manifest is written last,
     * by an atomic rename once the rest is on disk, and a directory without it is no snapshot: a write that fails
     * (a full disk) deletes what it wrote and says so, and an older snapshot it was replacing stops being one first,
     * so old and new files never mix into something that loads.
     */
    public static void write(GuestVm vm, Path dir) throws IOException {
        write(vm, dir, Map.of());
    }

    /** As {@link #write(GuestVm, Path)}, recording {@code labels} (the VM's, taken as they are) in the manifest. */
    public static void write(GuestVm vm, Path dir, Map<String, String> labels) throws IOException {
        Files.createDirectories(dir);
        Files.deleteIfExists(dir.resolve(MANIFEST_FILE));
        Path manifestTmp = dir.resolve(MANIFEST_FILE + ".tmp");
        try {
            SectionSet state = vm.saveState();
            GuestMemory mem = vm.memory();
            try (FileChannel ch = FileChannel.open(dir.resolve(MEMORY_FILE), StandardOpenOption.CREATE,
                    StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                for (MemoryRegion r : mem.regions()) {
                    for (long off = 0; off < r.size(); off += CHUNK) {
                        ByteBuffer b = mem.buffer(r.guestPhysAddr() + off, (int) Math.min(CHUNK, r.size() - off));
                        while (b.hasRemaining()) {
                            ch.write(b);
                        }
                    }
                }
                ch.force(false); // a full disk may only show when the blocks are allocated
            }
            Files.write(dir.resolve(STATE_FILE), StateCodec.encode(state));
            Properties p = new Properties();
            p.setProperty("format", "1");
            p.setProperty("memory_bytes", Long.toString(mem.totalBytes()));
            p.setProperty("memory_digest", Long.toHexString(mem.digest()));
            labels.forEach((k, v) -> p.setProperty(LABEL_PREFIX + k, v));
            try (OutputStream out = Files.newOutputStream(manifestTmp)) {
                p.store(out, "Ferry snapshot");
            }
            Files.move(manifestTmp, dir.resolve(MANIFEST_FILE), java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            for (String f : new String[] {MEMORY_FILE, STATE_FILE, MANIFEST_FILE + ".tmp"}) {
                try {
                    Files.deleteIfExists(dir.resolve(f));
                } catch (IOException ignored) {
                    // the first failure is the one to report
                }
            }
            throw new IOException("snapshot not written to " + dir + ": " + e.getClass().getSimpleName() + ": "
                    + e.getMessage() + "; nothing partial was left", e);
        }
    }

    /** Reads and checks the state sections of the snapshot in {@code dir}. */
    public static SectionSet readState(Path dir) throws IOException, StateException {
        return StateCodec.decode(Files.readAllBytes(dir.resolve(STATE_FILE)));
    }

    /** The labels recorded with the snapshot in {@code dir}: none in one written before snapshots kept them. */
    public static Map<String, String> labelsOf(Path dir) throws IOException {
        Properties p = readManifest(dir);
        Map<String, String> labels = new TreeMap<>();
        for (String key : p.stringPropertyNames()) {
            if (key.startsWith(LABEL_PREFIX)) {
                labels.put(key.substring(LABEL_PREFIX.length()), p.getProperty(key));
            }
        }
        return labels;
    }

    /** The backend that saved the snapshot in {@code dir}. */
    public static Backend backendOf(Path dir) throws IOException, StateException {
        return VmConfigSection.read(readState(dir)).backend();
    }

    /**
     * Builds a paused VM from the snapshot in {@code dir} on {@code backend}, which must be the one that
     * saved it: shape from the state, memory from the file (digest checked), then every section applied.
     * Call {@link GuestVm#start()} to resume it.
     */
    public static GuestVm restore(Path dir, GuestBackend backend, Consumer<String> console)
            throws IOException, StateException {
        SectionSet state = readState(dir);
        Properties manifest = readManifest(dir);
        GuestVm vm = backend.createForRestore(state, console);
        try {
            GuestMemory mem = vm.memory();
            long expectedBytes = Long.parseLong(manifest.getProperty("memory_bytes", "-1"));
            long fileBytes = Files.size(dir.resolve(MEMORY_FILE));
            if (expectedBytes != mem.totalBytes() || fileBytes != mem.totalBytes()) {
                throw new StateException("snapshot memory is " + fileBytes + " bytes (manifest says " + expectedBytes
                        + "), the VM in its state has " + mem.totalBytes());
            }
            loadMemory(mem, dir.resolve(MEMORY_FILE));
            long digest = mem.digest();
            String want = manifest.getProperty("memory_digest", "");
            if (!Long.toHexString(digest).equals(want)) {
                throw new StateException("snapshot memory digest " + Long.toHexString(digest) + " does not match the manifest's "
                        + want + ": memory.bin is corrupted");
            }
            vm.restoreState(state);
            return vm;
        } catch (IOException | StateException | RuntimeException e) {
            vm.close();
            throw e;
        }
    }

    private static Properties readManifest(Path dir) throws IOException {
        Properties p = new Properties();
        try (InputStream in = Files.newInputStream(dir.resolve(MANIFEST_FILE))) {
            p.load(in);
        }
        if (!"1".equals(p.getProperty("format"))) {
            throw new IOException("unsupported snapshot format '" + p.getProperty("format") + "' in " + dir);
        }
        return p;
    }

    private static void loadMemory(GuestMemory mem, Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            for (MemoryRegion r : mem.regions()) {
                for (long off = 0; off < r.size(); off += CHUNK) {
                    ByteBuffer b = mem.buffer(r.guestPhysAddr() + off, (int) Math.min(CHUNK, r.size() - off));
                    while (b.hasRemaining()) {
                        if (ch.read(b) < 0) {
                            throw new IOException("snapshot memory file ends early");
                        }
                    }
                }
            }
        }
    }
}
