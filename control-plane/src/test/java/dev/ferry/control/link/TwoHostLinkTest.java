package dev.ferry.control.link;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Two namespaces joined by a shaped veth: traffic flows, the rate holds, a cut stops it one way, restore heals. */
class TwoHostLinkTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @BeforeEach
    void needNamespaces() {
        TwoHostLink.unavailableReason().ifPresent(why -> Assumptions.assumeTrue(false, "skipped: " + why));
    }

    /** iperf3 from a to b for one second; bits per second received, or -1 when nothing got through. */
    private static double throughput(TwoHostLink link) throws Exception {
        Process server = new ProcessBuilder(link.inB(List.of("iperf3", "-s", "-1", "--forceflush", "-B", TwoHostLink.B_LINK_ADDRESS)))
                .redirectErrorStream(true).start();
        try {
            java.io.BufferedReader banner = new java.io.BufferedReader(
                    new java.io.InputStreamReader(server.getInputStream(), StandardCharsets.UTF_8));
            String line;
            while ((line = banner.readLine()) != null && !line.contains("Server listening")) {
                // iperf3 is ready once it says so
            }
            for (int attempt = 0; attempt < 3; attempt++) {
                // 3 s to connect: TCP resends a lost SYN after 1 s, and a 5 % lossy link loses one now and then (CI
                // failed here with 1 s); a cut link still fails to connect, just later.
                Process client = new ProcessBuilder(link.inA(List.of("iperf3", "-c", TwoHostLink.B_LINK_ADDRESS, "-t",
                        "1", "-J", "--connect-timeout", "3000"))).start();
                String out = new String(client.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                client.waitFor(20, TimeUnit.SECONDS);
                JsonNode j = JSON.readTree(out.isBlank() ? "{}" : out);
                if (j.has("end") && j.path("end").has("sum_received")) {
                    return j.path("end").path("sum_received").path("bits_per_second").asDouble();
                }
                if (j.path("error").asText().contains("unable to connect")) {
                    return -1;
                }
            }
            return -1;
        } finally {
            server.destroyForcibly();
            server.waitFor(5, TimeUnit.SECONDS);
        }
    }

    @Test
    void aShapedLinkCarriesTrafficAtItsRateAndACutStopsIt() throws Exception {
        try (TwoHostLink link = TwoHostLink.create(LinkSpec.parse("rate 100mbit"))) {
            double shaped = throughput(link);
            assertTrue(shaped > 20e6 && shaped < 130e6, "100 Mbit/s link carried " + shaped / 1e6 + " Mbit/s");
            link.shape(LinkSpec.UNSHAPED);
            double free = throughput(link);
            assertTrue(free > 2 * shaped, "unshaped " + free / 1e6 + " Mbit/s against " + shaped / 1e6);

            link.cut(TwoHostLink.Direction.A_TO_B);
            assertEquals(-1, throughput(link), "nothing gets from a to b while cut");
            link.restore();
            assertNotEquals(-1, throughput(link), "the link heals");
        }
    }

    @Test
    void namespacesAreGoneAfterClose() throws Exception {
        TwoHostLink link = TwoHostLink.create(LinkSpec.UNSHAPED);
        String probe = String.join(" ", link.inA(List.of("true")));
        link.close();
        Process p = new ProcessBuilder("ip", "netns", "list").start();
        String names = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        p.waitFor();
        String ns = probe.split(" ")[3];
        assertTrue(!names.contains(ns), ns + " still listed: " + names);
    }

    @Test
    void specsParseAndRefuseWhatTheLinkCannotDo() {
        assertEquals(new LinkSpec(1_000_000_000L, 0.1), LinkSpec.parse("rate 1gbit loss 0.1%"));
        assertEquals(new LinkSpec(10_000_000_000L, 0), LinkSpec.parse("rate 10gbit"));
        assertEquals(LinkSpec.UNSHAPED, LinkSpec.parse(""));
        IllegalArgumentException delay = assertThrows(IllegalArgumentException.class,
                () -> LinkSpec.parse("rate 1gbit delay 1ms"));
        assertTrue(delay.getMessage().contains("netem"), delay.getMessage());
        assertThrows(IllegalArgumentException.class, () -> LinkSpec.parse("rate fast"));
        assertThrows(IllegalArgumentException.class, () -> LinkSpec.parse("loss 100%"));
        assertThrows(IllegalArgumentException.class, () -> LinkSpec.parse("jitter 1ms"));
    }

    @Test
    void lossDropsPacketsAndIsCounted() throws IOException, Exception {
        try (TwoHostLink link = TwoHostLink.create(LinkSpec.parse("loss 5%"))) {
            double bps = throughput(link);
            assertTrue(bps > 0, "a lossy link still carries TCP");
            Process p = new ProcessBuilder(link.inA(List.of("nft", "list", "table", "inet", "ferrylink"))).start();
            String rules = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            p.waitFor();
            java.util.regex.Matcher m = java.util.regex.Pattern.compile("counter packets (\\d+)").matcher(rules);
            assertTrue(m.find() && Long.parseLong(m.group(1)) > 0, "the loss rule dropped packets: " + rules);
        }
    }
}
