package dev.ferry.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.ferry.backends.BackendTestSupport;
import dev.ferry.vm.Backend;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * {@code ferry soak --migrations 200 --json}, run as a separate process as a user would: 200 migrations of one small
 * guest back and forth between two agent processes, every one verified, and no growth of the agents' file
 * descriptors or threads after the baseline, nor of their heap by more than 10 % (the command's exit code says so).
 */
class SoakTest {
    @Test
    void twoHundredMigrationsLeakNothing() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        Path log = Agents.log("soak");
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-XX:+UseParallelGC", "-cp",
                System.getProperty("surefire.test.class.path", System.getProperty("java.class.path")),
                "dev.ferry.cli.Main", "soak", "--migrations", "200", "--json"));
        Process p = new ProcessBuilder(cmd).redirectError(log.toFile()).start();
        CompletableFuture<String> stdout = CompletableFuture.supplyAsync(() -> {
            try {
                return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
        if (!p.waitFor(15, TimeUnit.MINUTES)) { // a hung soak must not hang the build; its agents go with it
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
            fail("ferry soak did not finish in 15 minutes; see " + log);
        }
        String out = stdout.get(1, TimeUnit.MINUTES);
        String[] lines = out.strip().split("\n");
        JsonNode r = new ObjectMapper().readTree(lines[lines.length - 1]);
        String why = r.toString() + "\n" + String.join("\n", Files.readAllLines(log)).lines()
                .filter(l -> l.startsWith("migration ") || l.startsWith("after ")).reduce("", (a, b) -> a + "\n" + b);
        assertEquals(200, r.get("migrations").asInt(), why);
        assertEquals(200, r.get("verified").asInt(), why);
        assertEquals(0, r.get("wrong_pages").asInt(), why);
        assertTrue(r.get("fd_growth").asLong() <= 0, why);
        assertTrue(r.get("thread_growth").asLong() <= 0, why);
        assertTrue(r.get("heap_growth_percent").asDouble() <= 10, why);
        assertEquals(0, p.exitValue(), why);
    }
}
