package dev.ferry.state.fuzz;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The committed seed inputs of one Jazzer fuzz test, made by the real encoders (docs/fuzzing.md).
 *
 * <p>Jazzer's JUnit integration reads a fuzz test's inputs from the test resources directory
 * {@code <package path>/<TestClass>Inputs/<method>/}: every file there runs as a regression test, and seeds the
 * fuzzer in fuzzing mode. The seeds are the files named {@code seed-*}; inputs that once failed are kept beside them
 * under other names ({@code crash-*}, written by Jazzer) and are left alone here.
 *
 * <p>{@link #check} fails when a committed seed differs from what the encoders make now (the wire format changed:
 * regenerate). Run the seed tests with {@code -Dferry.fuzz.writeSeeds=true} to rewrite the files instead.
 */
public final class SeedCorpus {
    private static final Path RESOURCES = Path.of("src", "test", "resources");

    private SeedCorpus() {
    }

    /** The corpus directory of {@code fuzzTest}'s method {@code method}, relative to the module's directory. */
    public static Path directory(Class<?> fuzzTest, String method) {
        return RESOURCES.resolve(fuzzTest.getPackageName().replace('.', '/'))
                .resolve(fuzzTest.getSimpleName() + "Inputs").resolve(method);
    }

    /** Checks, or rewrites (see the class comment), the {@code seed-<name>} files of one fuzz test. */
    public static void check(Class<?> fuzzTest, String method, Map<String, byte[]> seeds) {
        Path dir = directory(fuzzTest, method);
        try {
            if (Boolean.getBoolean("ferry.fuzz.writeSeeds")) {
                write(dir, seeds);
                return;
            }
            for (Map.Entry<String, byte[]> e : seeds.entrySet()) {
                Path file = dir.resolve("seed-" + e.getKey());
                assertTrue(Files.isRegularFile(file), file + " is missing: run with -Dferry.fuzz.writeSeeds=true");
                assertArrayEquals(e.getValue(), Files.readAllBytes(file),
                        file + " is stale (the encoder changed): run with -Dferry.fuzz.writeSeeds=true");
            }
            for (Path file : seedFiles(dir)) {
                String name = file.getFileName().toString().substring("seed-".length());
                assertTrue(seeds.containsKey(name), file + " is no longer generated: run with -Dferry.fuzz.writeSeeds=true");
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static void write(Path dir, Map<String, byte[]> seeds) throws IOException {
        Files.createDirectories(dir);
        for (Path stale : seedFiles(dir)) {
            Files.delete(stale);
        }
        for (Map.Entry<String, byte[]> e : seeds.entrySet()) {
            Files.write(dir.resolve("seed-" + e.getKey()), e.getValue());
        }
    }

    private static List<Path> seedFiles(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        try (Stream<Path> files = Files.list(dir)) {
            return files.filter(f -> f.getFileName().toString().startsWith("seed-")).toList();
        }
    }
}
