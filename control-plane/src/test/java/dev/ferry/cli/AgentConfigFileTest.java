package dev.ferry.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.control.agent.AgentProcess;
import dev.ferry.security.CertificateAuthority;
import dev.ferry.security.TlsFiles;
import dev.ferry.security.TransportSecurity;
import dev.ferry.v1.ListVmsRequest;
import dev.ferry.v1.VmServiceGrpc;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code ferry agent --config agent.yaml}: every option from the file, flags win, unknown keys refused. */
class AgentConfigFileTest {
    @TempDir
    Path dir;

    private Path yaml(String text) throws IOException {
        Path f = dir.resolve("agent.yaml");
        Files.writeString(f, text);
        return f;
    }

    @Test
    void fileOptionsComeFirstAndFlagsWin() throws Exception {
        Path f = yaml("control: 0.0.0.0:7001\ndata: 0.0.0.0:7002\nmax-vms: 8\ninsecure: true\nno-warmup: false\n");
        String[] out = AgentConfigFile.expand(new String[] {"agent", "--config", f.toString(), "--max-vms", "3"});
        assertArrayEquals(new String[] {"agent", "--control", "0.0.0.0:7001", "--data", "0.0.0.0:7002", "--insecure",
                "--config", f.toString(), "--max-vms", "3"}, out);
    }

    @Test
    void otherCommandsAndAgentsWithoutAFileAreUntouched() throws Exception {
        String[] plain = {"agent", "--control", "a:1"};
        assertArrayEquals(plain, AgentConfigFile.expand(plain));
        String[] other = {"demo", "--config", "x"};
        assertArrayEquals(other, AgentConfigFile.expand(other));
    }

    @Test
    void mistakesAreOneClearLine() throws Exception {
        assertTrue(assertThrows(IOException.class, () -> AgentConfigFile.expand(new String[] {"agent", "--config",
                yaml("contrl: a:1\n").toString()})).getMessage().contains("'contrl' is not an agent option"));
        assertTrue(assertThrows(IOException.class, () -> AgentConfigFile.expand(new String[] {"agent", "--config",
                yaml("insecure: yes please\n").toString()})).getMessage().contains("is a flag"));
        assertTrue(assertThrows(IOException.class, () -> AgentConfigFile.expand(new String[] {"agent", "--config",
                yaml("control: [a, b]\n").toString()})).getMessage().contains("single value"));
        Cli.Result r = Cli.run("agent", "--config", dir.resolve("missing.yaml").toString());
        assertEquals(2, r.exit());
        assertTrue(r.err().startsWith("ferry: config file"), r.err());
    }

    @Test
    void aRealAgentTakesItsTlsFilesFromTheConfig() throws Exception {
        Path certs = dir.resolve("certs");
        CertificateAuthority.init(certs, List.of(), List.of());
        TlsFiles agent = TlsFiles.in(certs, "agent");
        Path f = yaml("tls-cert: " + agent.cert() + "\ntls-key: " + agent.key() + "\ntls-ca: " + agent.ca()
                + "\nbackend: process\nno-warmup: true\nmax-vms: 2\n");
        try (AgentProcess a = AgentProcess.start("config-agent", dir.resolve("agent.log"), List.of(),
                List.of("--config", f.toString()), TransportSecurity.mutualTls(TlsFiles.in(certs, "controller")))) {
            assertTrue(a.tls(), "the agent listens with the config file's certificate");
            assertEquals(0, VmServiceGrpc.newBlockingStub(a.channel()).listVms(ListVmsRequest.getDefaultInstance())
                    .getVmsCount());
        }
    }
}
