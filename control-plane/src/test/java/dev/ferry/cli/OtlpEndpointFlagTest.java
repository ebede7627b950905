package dev.ferry.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code ferry agent --otlp-endpoint}: a config-file key like every flag, and a bad URL is one line. */
class OtlpEndpointFlagTest {
    @Test
    void theConfigFileSetsIt(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("agent.yaml");
        Files.writeString(f, "otlp-endpoint: http://collector:4317\n");
        assertArrayEquals(new String[] {"agent", "--otlp-endpoint", "http://collector:4317", "--config", f.toString()},
                AgentConfigFile.expand(new String[] {"agent", "--config", f.toString()}));
    }

    @Test
    void aBadUrlIsOneClearLineAndNothingStarts() {
        Cli.Result r = Cli.run("agent", "--control", "127.0.0.1:0", "--data", "127.0.0.1:0", "--insecure",
                "--no-warmup", "--otlp-endpoint", "collector:4317");
        assertEquals(2, r.exit(), r.out() + r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().startsWith("ferry: --otlp-endpoint 'collector:4317' must be http://HOST:PORT"), r.err());
    }
}
