package dev.ferry.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.ferry.dataplane.bench.PageThroughputBench;
import dev.ferry.memory.GuestMemory;
import dev.ferry.security.CertificateAuthority;
import dev.ferry.security.TlsFiles;
import dev.ferry.security.TransportSecurity;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code ferry bench}: page throughput of the data plane in plaintext and over mutual TLS (the ratio is
 * what TLS costs), against what plain TCP achieves on loopback (iperf3), all in the same run.
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Measure data-plane page throughput over loopback, plaintext and mutual TLS, next to iperf3's TCP throughput in the same run.")
final class BenchCommand implements Callable<Integer> {
    @Option(names = "--memory", defaultValue = "1g", description = "Memory streamed per round (default ${DEFAULT-VALUE}).")
    ByteSize memory;

    @Option(names = "--streams", defaultValue = "4", description = "Parallel streams (default ${DEFAULT-VALUE}).")
    int streams;

    @Option(names = "--rounds", defaultValue = "3", description = "Measured rounds after one warm-up (default ${DEFAULT-VALUE}).")
    int rounds;

    @Option(names = "--json", description = "Print the result as one JSON object on the last line.")
    boolean json;

    @Override
    public Integer call() throws Exception {
        ObjectNode o = Output.object();
        Double iperf = iperf3MiBps();
        if (iperf != null) {
            o.put("iperf3_mib_s", Math.round(iperf));
        } else {
            o.putNull("iperf3_mib_s");
        }
        // TLS and plaintext in the same run, over the same memory, alternating so that drift in what else
        // runs on the host falls on both.
        Path certs = Files.createTempDirectory("ferry-bench-certs-");
        PageThroughputBench.Result plain = null;
        PageThroughputBench.Result tls = null;
        try {
            CertificateAuthority.init(certs, List.of(), List.of());
            TransportSecurity agent = TransportSecurity.mutualTls(TlsFiles.in(certs, "agent"));
            long bytes = memory.bytes();
            int slots = Math.max(1, (int) ((bytes + (1L << 30) - 1) >> 30));
            try (GuestMemory src = GuestMemory.allocate(bytes, slots); GuestMemory dst = GuestMemory.allocate(bytes, slots)) {
                PageThroughputBench.fill(src, 3);
                TransportSecurity insecure = TransportSecurity.insecure();
                for (int pass = 0; pass < 2; pass++) {
                    PageThroughputBench.Result p = PageThroughputBench.measure(src, dst, streams, rounds, insecure, insecure);
                    PageThroughputBench.Result t = PageThroughputBench.measure(src, dst, streams, rounds, agent, agent);
                    plain = better(plain, p);
                    tls = better(tls, t);
                }
            }
        } finally {
            try (var files = Files.list(certs)) {
                for (Path f : files.toList()) {
                    Files.deleteIfExists(f);
                }
            }
            Files.deleteIfExists(certs);
        }
        o.put("memory_bytes", memory.bytes());
        o.put("streams", streams);
        o.put("page_hash", dev.ferry.memory.PageHashes.implementation());
        o.put("page_mib_s_median", Math.round(plain.medianMibPerSecond()));
        o.put("page_mib_s_best", Math.round(plain.bestMibPerSecond()));
        o.put("tls_page_mib_s_median", Math.round(tls.medianMibPerSecond()));
        o.put("tls_page_mib_s_best", Math.round(tls.bestMibPerSecond()));
        o.put("tls_ratio", Math.round(tls.medianMibPerSecond() / plain.medianMibPerSecond() * 1000) / 1000.0);
        boolean equal = plain.digestsEqual() && tls.digestsEqual();
        o.put("digests_equal", equal);
        if (iperf != null) {
            o.put("ratio_to_iperf3", Math.round(plain.medianMibPerSecond() / iperf * 1000) / 1000.0);
        }
        Output.print(o, json);
        return equal ? 0 : 1;
    }

    /** Of two passes, the one with the higher median; digests must hold in both. */
    private static PageThroughputBench.Result better(PageThroughputBench.Result a, PageThroughputBench.Result b) {
        if (a == null) {
            return b;
        }
        PageThroughputBench.Result best = a.medianMibPerSecond() >= b.medianMibPerSecond() ? a : b;
        return new PageThroughputBench.Result(best.mib(), best.streams(), best.medianMibPerSecond(),
                Math.max(a.bestMibPerSecond(), b.bestMibPerSecond()), a.digestsEqual() && b.digestsEqual());
    }

    /** iperf3 over loopback for 3 s, or null when iperf3 is not installed. */
    private static Double iperf3MiBps() throws IOException, InterruptedException {
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        Process server;
        try {
            server = new ProcessBuilder("iperf3", "-s", "-1", "-p", Integer.toString(port), "-B", "127.0.0.1")
                    .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        } catch (IOException e) {
            System.err.println("ferry bench: iperf3 not found; install it (apt-get install iperf3) to compare with TCP");
            return null;
        }
        try {
            for (int attempt = 0; attempt < 50; attempt++) {
                Process client = new ProcessBuilder("iperf3", "-c", "127.0.0.1", "-p", Integer.toString(port), "-t", "3", "-J")
                        .redirectErrorStream(true).start();
                String out = new String(client.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                client.waitFor(30, TimeUnit.SECONDS);
                JsonNode j = Output.JSON.readTree(out);
                if (!j.has("error")) {
                    return j.at("/end/sum_received/bits_per_second").asDouble() / 8 / 1048576;
                }
                Thread.sleep(100); // the server is still starting: retry the connect
            }
            return null;
        } finally {
            server.destroy();
            server.waitFor(5, TimeUnit.SECONDS);
        }
    }

}
