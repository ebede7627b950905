package dev.ferry.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.ferry.dataplane.bench.PageThroughputBench;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code ferry bench}: page throughput of the data plane against what plain TCP achieves on
 * loopback (iperf3), measured in the same run on the same machine.
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Measure data-plane page throughput over loopback, next to iperf3's TCP throughput in the same run.")
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
        PageThroughputBench.Result r = PageThroughputBench.measure(memory.bytes() >> 20, streams, rounds);
        o.put("memory_bytes", memory.bytes());
        o.put("streams", streams);
        o.put("page_mib_s_median", Math.round(r.medianMibPerSecond()));
        o.put("page_mib_s_best", Math.round(r.bestMibPerSecond()));
        o.put("digests_equal", r.digestsEqual());
        if (iperf != null) {
            o.put("ratio_to_iperf3", Math.round(r.medianMibPerSecond() / iperf * 1000) / 1000.0);
        }
        Output.print(o, json);
        return r.digestsEqual() ? 0 : 1;
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
