package dev.ferry.control.link;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Two hosts on one machine: network namespaces {@code a} and {@code b}, joined by a veth pair shaped like a
 * real link (tc tbf for bandwidth, nftables for loss), which a test or the demo can cut, one way or both, and
 * restore. Each namespace also has an unshaped management veth to this one, so this process reaches both
 * hosts (as a controller would on its own network) while the hosts talk to each other over the link.
 *
 * <p>Needs root and iproute2 (nftables for loss); {@link #unavailableReason()} says what is missing. Uses only
 * addresses inside its own namespaces: the link is 10.77.0.1/30 (a) — 10.77.0.2/30 (b), the management
 * links 10.78.N.0/30 with this namespace at .1 and the host at .2 (N counts links made by this process). This
 * namespace routes the two link addresses over the management links of the newest link made, so one link at a
 * time is reachable at its link addresses from here.
 * {@link #close()} deletes both namespaces and every interface in them.
 */
public final class TwoHostLink implements AutoCloseable {
    /** Which way traffic goes: from a to b, from b to a, or both. */
    public enum Direction { A_TO_B, B_TO_A, BOTH }

    public static final String A_LINK_ADDRESS = "10.77.0.1";
    public static final String B_LINK_ADDRESS = "10.77.0.2";
    private static final AtomicInteger LINKS = new AtomicInteger();

    private final String nsA;
    private final String nsB;
    private final int n;
    private LinkSpec spec = LinkSpec.UNSHAPED;
    private boolean cutAtoB;
    private boolean cutBtoA;
    private boolean closed;

    private TwoHostLink(String nsA, String nsB, int n) {
        this.nsA = nsA;
        this.nsB = nsB;
        this.n = n;
    }

    /** Why links cannot be made here (not root, no ip command), or empty. */
    public static java.util.Optional<String> unavailableReason() {
        try {
            Process p = new ProcessBuilder("ip", "netns", "list").redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(10, TimeUnit.SECONDS) || p.exitValue() != 0) {
                return java.util.Optional.of("'ip netns list' failed: " + out.strip());
            }
        } catch (IOException e) {
            return java.util.Optional.of("the ip command (iproute2) is missing: " + e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return java.util.Optional.of("interrupted");
        }
        if (!"root".equals(System.getProperty("user.name"))) {
            return java.util.Optional.of("network namespaces need root");
        }
        return java.util.Optional.empty();
    }

    /**
     * Why a link shaped as {@code spec} cannot be made here: namespaces unavailable, or the tool the shape needs
     * (tc for a rate, nft for loss) missing; empty if it can.
     */
    public static java.util.Optional<String> unavailableReason(LinkSpec spec) {
        java.util.Optional<String> base = unavailableReason();
        if (base.isPresent()) {
            return base;
        }
        if (spec.rateBitsPerSecond() > 0 && !onPath("tc")) {
            return java.util.Optional.of("shaping a rate needs tc (iproute2), which is missing");
        }
        if (spec.lossPercent() > 0 && !onPath("nft")) {
            return java.util.Optional.of("loss needs nftables (the nft command), which is missing");
        }
        return java.util.Optional.empty();
    }

    private static boolean onPath(String command) {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
            if (java.nio.file.Files.isExecutable(java.nio.file.Path.of(dir, command))) {
                return true;
            }
        }
        return java.nio.file.Files.isExecutable(java.nio.file.Path.of("/usr/sbin", command));
    }

    /** Makes both namespaces, the link and the management links, shaped as {@code spec}. */
    public static TwoHostLink create(LinkSpec spec) throws IOException {
        int n = LINKS.getAndIncrement();
        if (n > 250) {
            throw new IllegalStateException("too many links made by this process");
        }
        String tag = ProcessHandle.current().pid() + "-" + n;
        TwoHostLink l = new TwoHostLink("ferry-" + tag + "-a", "ferry-" + tag + "-b", n);
        try {
            l.build();
            l.shape(spec);
        } catch (IOException | RuntimeException e) {
            l.close();
            throw e;
        }
        return l;
    }

    private void build() throws IOException {
        String link = "fl" + ProcessHandle.current().pid() % 100000 + "x" + n;
        run("ip", "netns", "add", nsA);
        run("ip", "netns", "add", nsB);
        for (String ns : List.of(nsA, nsB)) {
            run("ip", "-n", ns, "link", "set", "lo", "up");
        }
        run("ip", "link", "add", link + "a", "type", "veth", "peer", "name", link + "b");
        run("ip", "link", "set", link + "a", "netns", nsA);
        run("ip", "link", "set", link + "b", "netns", nsB);
        run("ip", "-n", nsA, "addr", "add", A_LINK_ADDRESS + "/30", "dev", link + "a");
        run("ip", "-n", nsB, "addr", "add", B_LINK_ADDRESS + "/30", "dev", link + "b");
        run("ip", "-n", nsA, "link", "set", link + "a", "up");
        run("ip", "-n", nsB, "link", "set", link + "b", "up");
        management(nsA, link + "ma", 0);
        management(nsB, link + "mb", 1);
        // This namespace reaches each host's link address over that host's management veth (never over the
        // link), so agents can listen on their link address alone and still be driven from here.
        run("ip", "route", "replace", A_LINK_ADDRESS + "/32", "via", aManagementAddress());
        run("ip", "route", "replace", B_LINK_ADDRESS + "/32", "via", bManagementAddress());
    }

    /** A veth from this namespace into {@code ns}: 10.78.(2n+k).1 here, .2 there. */
    private void management(String ns, String dev, int k) throws IOException {
        String net = "10.78." + (2 * n + k) + ".";
        run("ip", "link", "add", dev + "h", "type", "veth", "peer", "name", dev + "n");
        run("ip", "link", "set", dev + "n", "netns", ns);
        run("ip", "addr", "add", net + "1/30", "dev", dev + "h");
        run("ip", "-n", ns, "addr", "add", net + "2/30", "dev", dev + "n");
        run("ip", "link", "set", dev + "h", "up");
        run("ip", "-n", ns, "link", "set", dev + "n", "up");
    }

    /** Where this process reaches host a (management link, unshaped). */
    public String aManagementAddress() {
        return "10.78." + (2 * n) + ".2";
    }

    public String bManagementAddress() {
        return "10.78." + (2 * n + 1) + ".2";
    }

    /** {@code command} run inside host a's namespace. */
    public List<String> inA(List<String> command) {
        return in(nsA, command);
    }

    public List<String> inB(List<String> command) {
        return in(nsB, command);
    }

    private static List<String> in(String ns, List<String> command) {
        List<String> c = new ArrayList<>(List.of("ip", "netns", "exec", ns));
        c.addAll(command);
        return c;
    }

    public synchronized LinkSpec spec() {
        return spec;
    }

    /** Reshapes the link, both ways. */
    public synchronized void shape(LinkSpec s) throws IOException {
        for (String[] side : sides()) {
            String ns = side[0];
            String dev = side[1];
            runQuietly("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root");
            if (s.rateBitsPerSecond() > 0) {
                // burst: 10 ms worth of bytes, at least 64 KiB, so TCP is not starved at high rates
                long burst = Math.max(64 * 1024, s.rateBitsPerSecond() / 8 / 100);
                run("ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate",
                        s.rateBitsPerSecond() + "bit", "burst", Long.toString(burst), "latency", "50ms");
            }
        }
        spec = s;
        applyFilters();
    }

    /** Drops every packet going {@code d} until {@link #restore()}. */
    public synchronized void cut(Direction d) throws IOException {
        cutAtoB |= d != Direction.B_TO_A;
        cutBtoA |= d != Direction.A_TO_B;
        applyFilters();
    }

    /** Ends every cut; the shape stays. */
    public synchronized void restore() throws IOException {
        cutAtoB = false;
        cutBtoA = false;
        applyFilters();
    }

    /** nftables in each sender's namespace: drop all while cut, else drop the configured share. */
    private void applyFilters() throws IOException {
        for (String[] side : sides()) {
            String ns = side[0];
            String dev = side[1];
            boolean cut = ns.equals(nsA) ? cutAtoB : cutBtoA;
            runQuietly("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "ferrylink");
            if (!cut && spec.lossPercent() == 0) {
                continue;
            }
            run("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "ferrylink");
            run("ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "ferrylink", "out",
                    "{ type filter hook output priority 0; }");
            if (cut) {
                run("ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "ferrylink", "out", "oifname", dev, "drop");
            } else {
                // numgen per mille, so fractions of a percent work
                long perMille = Math.max(1, Math.round(spec.lossPercent() * 10));
                run("ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "ferrylink", "out", "oifname", dev,
                        "numgen", "random", "mod", "1000", "<", Long.toString(perMille), "counter", "drop");
            }
        }
    }

    private String[][] sides() {
        String link = "fl" + ProcessHandle.current().pid() % 100000 + "x" + n;
        return new String[][] {{nsA, link + "a"}, {nsB, link + "b"}};
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        // Deleting a namespace deletes its interfaces, and a veth's peer with it.
        runQuietly("ip", "netns", "del", nsA);
        runQuietly("ip", "netns", "del", nsB);
    }

    private static void run(String... cmd) throws IOException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
        try {
            if (!p.waitFor(30, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IOException(String.join(" ", cmd) + ": timed out");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException(String.join(" ", cmd) + ": interrupted");
        }
        if (p.exitValue() != 0) {
            throw new IOException(String.join(" ", cmd) + " failed (" + p.exitValue() + "): " + out);
        }
    }

    private static void runQuietly(String... cmd) {
        try {
            run(cmd);
        } catch (IOException e) {
            // absent already
        }
    }
}
