package dev.ferry.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.util.JsonFormat;
import dev.ferry.backends.Backends;
import dev.ferry.backends.BackendTestSupport;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.state.Section;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.SectionSet;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.zip.GZIPInputStream;
import java.util.zip.GZIPOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Whole-VM snapshots written by an earlier build must keep restoring, and the guest must go on from where it was.
 *
 * <p>{@code src/test/resources/golden/vm/RELEASE/BACKEND/} holds one snapshot per release and backend, as
 * {@link Snapshot#write} left it, except that {@code memory.bin} is stored gzipped ({@code memory.bin.gz}: a
 * 16 MiB guest that is mostly zero pages) so the repository stays small. Beside it, {@code guest.properties}
 * records what the guest had done when it was saved, and {@code expected-state.json} is every section decoded
 * (and upgraded) by the current schemas: it changes only when a schema adds a field or a version, and a diff of
 * that file in review shows what a reader of the old snapshot now sees.
 *
 * <p>How a later release adds its own golden snapshots and keeps loading these: add its release to
 * {@link #RELEASES}, run
 * <pre>
 *   mvn -B -o -pl native-kvm -am verify -Dtest='GoldenSnapshotTest#write*' -Dferry.golden.release=NEW_RELEASE \
 *       -Dsurefire.failIfNoSpecifiedTests=false
 * </pre>
 * on a host with /dev/kvm (both backends), and commit the new directory. Never rewrite an old release's files:
 * when the state schemas change, old snapshots must load through upgrade steps (state-serializers/README.md),
 * and only {@code expected-state.json} of the old releases may be regenerated
 * ({@code -Dferry.golden.expected=true}, then review the diff).
 */
@ParameterizedClass(name = "on {0}")
@EnumSource(Backend.class)
class GoldenSnapshotTest {
    /**
     * Releases whose snapshots this build must restore, oldest first. 0.1.0-a467c58 was written by main at
     * a467c58, before section kvm.vm version 2 (typed PIT, PIC, IOAPIC), so it also loads through that upgrade.
     */
    static final List<String> RELEASES = List.of("0.1.0-a467c58", "0.1.0");

    static final String RELEASE_PROPERTY = "ferry.golden.release";
    static final String EXPECTED_PROPERTY = "ferry.golden.expected";
    static final String MEMORY_GZ = "memory.bin.gz";
    static final String GUEST_FILE = "guest.properties";
    static final String EXPECTED_JSON = "expected-state.json";
    static final Duration T = Duration.ofSeconds(30);

    static GuestBackend backend;

    @Parameter
    Backend kind;

    @TempDir
    Path work;

    @BeforeParameterizedClassInvocation
    static void open(Backend kind) {
        backend = BackendTestSupport.open(kind);
    }

    static Path goldenDir(String release, Backend kind) {
        return Path.of(System.getProperty("basedir", "."), "src/test/resources/golden/vm", release,
                kind.name().toLowerCase(java.util.Locale.ROOT));
    }

    @Test
    void everyReleaseRestoresAndTheGuestGoesOn() throws Exception {
        for (String release : RELEASES) {
            Path golden = goldenDir(release, kind);
            assertTrue(Files.isDirectory(golden), "no golden snapshot for " + release + " on " + kind + " in " + golden);
            Path dir = unpack(golden, work.resolve(release));
            Properties saved = properties(golden.resolve(GUEST_FILE));

            assertEquals(Files.readString(golden.resolve(EXPECTED_JSON)), decodedJson(Snapshot.readState(dir)),
                    release + "/" + kind + ": the sections no longer decode to " + EXPECTED_JSON);
            assertEquals(java.util.Map.of(), Snapshot.labelsOf(dir), release + "/" + kind
                    + ": written before snapshots kept labels, it has none");
            if (!GoldenSnapshots.restoresOn(release, kind, backend.capabilities().tsc())) {
                // KVM cannot make this guest's TSC tick at its rate here: the restore must say so, and nothing else.
                IncompatibleShapeException e = assertThrows(IncompatibleShapeException.class,
                        () -> Snapshot.restore(dir, backend, l -> { }).close());
                assertEquals("tsc_khz", e.field(), e.getMessage());
                assertTrue(e.getMessage().contains(Integer.toString(GoldenSnapshots.tscKhz(release, kind))),
                        e.getMessage());
                continue;
            }
            try (GuestVm vm = Snapshot.restore(dir, backend, l -> { })) {
                GuestProbe probe = vm.probe().orElseThrow();
                assertEquals(Long.parseLong(saved.getProperty("guest_counter")), probe.guestCounter(),
                        release + "/" + kind + ": the guest's counter in restored memory");
                vm.start();
                long r = probe.reportStats().reports();
                assertTrue(probe.awaitReports(r, 10, T), release + "/" + kind + ": the restored guest does not report");
                assertTrue(probe.guestCounter() > Long.parseLong(saved.getProperty("guest_counter")),
                        release + "/" + kind + ": the restored guest does not move");
                assertEquals(0, probe.selfCheck(T), release + "/" + kind + ": pages wrong after the restore");
            }
        }
    }

    /** Writes this backend's golden snapshot for {@code -Dferry.golden.release}; see the class comment. */
    @Test
    @EnabledIfSystemProperty(named = RELEASE_PROPERTY, matches = ".+")
    void writeGoldenSnapshot() throws Exception {
        Path golden = goldenDir(System.getProperty(RELEASE_PROPERTY), kind);
        Files.createDirectories(golden);
        // Small and mostly zero: a 16 MiB guest writing a 256 KiB working set slowly.
        VmConfig c = new VmConfig(2, 16L << 20, 1, WorkloadSpec.of(256 << 10, 256 << 10, false));
        Path raw = work.resolve("raw");
        long counter;
        try (GuestVm vm = backend.create(c, l -> { })) {
            vm.start();
            GuestProbe probe = vm.probe().orElseThrow();
            assertTrue(probe.awaitFillDone(T));
            assertTrue(probe.awaitReports(probe.reportStats().reports(), 20, T));
            vm.pause();
            Snapshot.write(vm, raw);
            counter = probe.guestCounter();
        }
        Files.copy(raw.resolve(Snapshot.STATE_FILE), golden.resolve(Snapshot.STATE_FILE));
        Files.copy(raw.resolve(Snapshot.MANIFEST_FILE), golden.resolve(Snapshot.MANIFEST_FILE));
        try (OutputStream out = new GZIPOutputStream(Files.newOutputStream(golden.resolve(MEMORY_GZ)))) {
            Files.copy(raw.resolve(Snapshot.MEMORY_FILE), out);
        }
        Properties p = new Properties();
        p.setProperty("guest_counter", Long.toString(counter));
        try (OutputStream out = Files.newOutputStream(golden.resolve(GUEST_FILE))) {
            p.store(out, "What the guest had done when the golden snapshot was written");
        }
        Files.writeString(golden.resolve(EXPECTED_JSON), decodedJson(Snapshot.readState(raw)));
    }

    /** Rewrites expected-state.json of every release from today's schemas (review the diff!). */
    @Test
    @EnabledIfSystemProperty(named = EXPECTED_PROPERTY, matches = "true")
    void writeExpectedJson() throws Exception {
        for (String release : RELEASES) {
            Path golden = goldenDir(release, kind);
            Path dir = unpack(golden, work.resolve(release));
            Files.writeString(golden.resolve(EXPECTED_JSON), decodedJson(Snapshot.readState(dir)));
        }
    }

    /** Every section decoded and upgraded by today's schemas, as protobuf JSON, in stream order. */
    static String decodedJson(SectionSet state) throws Exception {
        StringBuilder b = new StringBuilder();
        JsonFormat.Printer printer = JsonFormat.printer().includingDefaultValueFields();
        for (Section s : state) {
            SectionSchema<?> schema = Backends.allSchemas().stream().filter(x -> x.name().equals(s.name()))
                    .findFirst().orElseThrow(() -> new AssertionError("no schema for " + s.label()));
            b.append("// ").append(s.label()).append(" (written at version ").append(s.version()).append(")\n")
                    .append(printer.print(schema.decode(s))).append('\n');
        }
        return b.toString();
    }

    /** The golden snapshot as {@link Snapshot#restore} reads it, in {@code to}. */
    static Path unpack(Path golden, Path to) throws IOException {
        Files.createDirectories(to);
        Files.copy(golden.resolve(Snapshot.STATE_FILE), to.resolve(Snapshot.STATE_FILE));
        Files.copy(golden.resolve(Snapshot.MANIFEST_FILE), to.resolve(Snapshot.MANIFEST_FILE));
        try (InputStream in = new GZIPInputStream(Files.newInputStream(golden.resolve(MEMORY_GZ)))) {
            Files.copy(in, to.resolve(Snapshot.MEMORY_FILE));
        }
        return to;
    }

    static Properties properties(Path file) throws IOException {
        Properties p = new Properties();
        try (InputStream in = Files.newInputStream(file)) {
            p.load(in);
        }
        return p;
    }

    static String utf8(byte[] b) {
        return new String(b, StandardCharsets.UTF_8);
    }
}
