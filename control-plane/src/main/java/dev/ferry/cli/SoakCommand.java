package dev.ferry.cli;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.v1.CheckVmMemoryRequest;
import dev.ferry.v1.CheckVmMemoryResponse;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WatchMigrationRequest;
import dev.ferry.v1.WorkloadSpec;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code ferry soak}: two agents as separate processes (as {@code ferry demo} starts them), one small VM migrated
 * back and forth many times, and the agents' open file descriptors, threads and heap watched for growth.
 *
 * <p>The heap is read with the JDK's {@code jcmd} ({@code GC.run}, then {@code GC.heap_info}) on the agent
 * processes, which are this command's own children: agents serve no JVM metrics (their Prometheus endpoint carries
 * migration metrics only), and a hidden admin RPC just for this would widen the API. File descriptors and threads
 * come from {@code /proc/PID/fd} and {@code /proc/PID/task}. Every sample attaches jcmd first, so the attach
 * listener it leaves in the agent is already there at the baseline.
 */
@Command(name = "soak", mixinStandardHelpOptions = true,
        description = "Migrate one small VM back and forth between two agents N times; fail on a failed migration or on"
                + " growth of the agents' file descriptors, threads or heap.")
final class SoakCommand implements Callable<Integer> {
    /**
     * Agents keep the last 10 finished migrations per role (default 1000): the bounded history is full before the
     * baseline, so heap growth after it is a leak, not records the agent keeps on purpose.
     */
    private static final List<String> SOAK_JVM = List.of("-D" + dev.ferry.control.migration.MigrationServices
            .KEPT_FINISHED_PROPERTY + "=10");

    private static final long CALL_SECONDS = 120;

    @Option(names = "--migrations", defaultValue = "200", description = "Migrations to run (default ${DEFAULT-VALUE}).")
    int migrations;

    @Option(names = "--mode", defaultValue = "mixed",
            description = "precopy, postcopy, hybrid, or mixed (the three in turn; default ${DEFAULT-VALUE}).")
    String mode;

    @Option(names = "--memory", defaultValue = "64m", description = "Guest RAM (default ${DEFAULT-VALUE}).")
    ByteSize memory;

    @Option(names = "--working-set", defaultValue = "16m", description = "Bytes the guest keeps writing (default ${DEFAULT-VALUE}).")
    ByteSize workingSet;

    @Option(names = "--dirty-rate", defaultValue = "1m", description = "Guest dirty rate per second (default ${DEFAULT-VALUE}).")
    Rate dirtyRate;

    @Option(names = "--baseline-after", defaultValue = "10",
            description = "Migrations before the baseline sample, so start-up effects (class loading, pools filling)"
                    + " do not count as growth (default ${DEFAULT-VALUE}).")
    int baselineAfter;

    @Option(names = "--sample-every", defaultValue = "50", description = "Sample the agents every N migrations (default ${DEFAULT-VALUE}).")
    int sampleEvery;

    @Option(names = "--max-heap-growth", defaultValue = "10",
            description = "Most heap growth after a full GC, in percent of the baseline, before failing (default ${DEFAULT-VALUE}).")
    double maxHeapGrowth;

    @Option(names = "--json", description = "Print the result as one JSON object on the last line.")
    boolean json;

    @Option(names = "--backend", defaultValue = "process", converter = BackendOption.ChoiceConverter.class,
            description = "What runs the guest: process (default), kvm or auto.")
    dev.ferry.backends.Backends.Choice backend;

    /**
     * One agent's resources at one point of the soak. {@code threads} leaves out the pools that grow and shrink with
     * recent load on their own (gRPC's cached executor, idle for 60 s before a thread ends; the JIT's compiler
     * threads; CompletableFuture's helper threads), which would show as growth or shrinkage from one sample to the
     * next without any leak; {@code threadsTotal} counts every thread.
     */
    record Sample(int after, String agent, long fds, long threads, long threadsTotal, long heapBytes) {
        ObjectNode toJson() {
            return Output.object().put("after", after).put("agent", agent).put("fds", fds).put("threads", threads)
                    .put("threads_total", threadsTotal).put("heap_bytes", heapBytes);
        }
    }

    /** Thread names (as the kernel keeps them: the first 15 characters) of the self-sizing pools above. */
    private static final List<String> ELASTIC_THREADS = List.of("grpc-default-ex", "C1 CompilerThre",
            "C2 CompilerThre", "CompletableFutu", "ForkJoinPool.co");

    @Override
    public Integer call() throws Exception {
        if (migrations < 1 || baselineAfter < 0 || sampleEvery < 1) {
            throw new IllegalArgumentException("--migrations and --sample-every must be at least 1, --baseline-after at least 0");
        }
        List<MigrationMode> modes = modes(mode);
        dev.ferry.backends.Backends.open(backend); // one clear line here if the backend cannot run, not in two agents' logs
        Path logs = Files.createTempDirectory("ferry-soak-");
        say("starting two agents (logs in %s)", logs);
        Path certs = logs.resolve("certs");
        dev.ferry.security.CertificateAuthority.init(certs, List.of(), List.of());
        dev.ferry.security.TransportSecurity controller = dev.ferry.security.TransportSecurity.mutualTls(
                dev.ferry.security.TlsFiles.in(certs, "controller"));
        List<String> agentArgs = new ArrayList<>(List.of("--backend", backend.name().toLowerCase(Locale.ROOT)));
        agentArgs.addAll(dev.ferry.security.TlsOptions.flags(dev.ferry.security.TlsFiles.in(certs, "agent")));
        // No start-up warm-up: the migrations before the baseline stand in for it, and a warm-up cut short by a
        // loaded host can leave an agent that never becomes ready (see the report of issue #12).
        agentArgs.add("--no-warmup");
        // Both start (and warm up) at once; whichever fails, the other is still closed.
        var startB = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            try {
                return AgentProcess.start("soak-b", logs.resolve("b.log"), SOAK_JVM, agentArgs, controller);
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
        AgentProcess first;
        try {
            first = AgentProcess.start("soak-a", logs.resolve("a.log"), SOAK_JVM, agentArgs, controller);
        } catch (IOException | RuntimeException e) {
            startB.thenAccept(b -> {
                try {
                    b.close();
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                }
            });
            throw e;
        }
        AgentProcess second;
        try {
            second = startB.join();
        } catch (java.util.concurrent.CompletionException e) {
            first.close();
            throw e.getCause() instanceof java.io.UncheckedIOException u ? u.getCause() : e;
        }
        try (AgentProcess a = first; AgentProcess b = second) {
            say("agent a pid %d control %s; agent b pid %d control %s", a.pid(), a.controlAddress(), b.pid(),
                    b.controlAddress());
            Vm vm = VmServiceGrpc.newBlockingStub(a.channel()).withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS)
                    .createVm(CreateVmRequest.newBuilder().setVmId("soak").setVm(Vm.newBuilder().setVcpuCount(1)
                            .setMemoryBytes(memory.bytes()).setWorkload(WorkloadSpec.newBuilder()
                                    .setWorkingSetBytes(workingSet.bytes())
                                    .setDirtyRateBytesPerSecond(dirtyRate.bytesPerSecond()))).build());
            say("created %s on a (%s backend): %d MiB, working set %d MiB, dirty rate %d KiB/s", vm.getName(),
                    vm.getBackend().name().toLowerCase(Locale.ROOT), memory.bytes() >> 20, workingSet.bytes() >> 20,
                    dirtyRate.bytesPerSecond() >> 10);

            List<Sample> samples = new ArrayList<>();
            List<Sample> baseline = null;
            List<Double> downtimes = new ArrayList<>();
            int verified = 0;
            int done = 0;
            String failure = null;
            AgentProcess from = a;
            AgentProcess to = b;
            for (int i = 1; i <= migrations; i++) {
                MigrationMode m = modes.get((i - 1) % modes.size());
                Migration end = migrate(from, to, vm.getName(), "soak-" + i, m);
                double downtime = millis(end.getStatistics().getDowntime());
                boolean ok = end.getPhase() == Migration.Phase.COMPLETED && end.getStatistics().getMemoryVerified();
                say("migration %d %s -> %s %s: %s, downtime %.2f ms, verified %s%s", i, from.name(), to.name(),
                        m.name().toLowerCase(Locale.ROOT), end.getPhase(), downtime, ok,
                        end.getError().getMessage().isEmpty() ? "" : " (" + dev.ferry.v1.MigrationErrors.summary(end) + ")");
                done = i;
                if (!ok) {
                    failure = "migration " + i + " ended " + end.getPhase() + (end.getError().getMessage().isEmpty()
                            ? " unverified" : ": " + dev.ferry.v1.MigrationErrors.summary(end));
                    break;
                }
                verified++;
                downtimes.add(downtime);
                AgentProcess t = from;
                from = to;
                to = t;
                if (i == Math.min(baselineAfter, migrations) || i % sampleEvery == 0 || i == migrations) {
                    List<Sample> now = List.of(sample(a, i), sample(b, i));
                    samples.addAll(now);
                    now.forEach(s -> say("after %d migrations: agent %s fds %d threads %d (%d with self-sizing pools)"
                            + " heap %.1f MiB", s.after(), s.agent(), s.fds(), s.threads(), s.threadsTotal(),
                            s.heapBytes() / 1048576.0));
                    if (baseline == null && i >= Math.min(baselineAfter, migrations)) {
                        baseline = now;
                    }
                }
            }
            if (baseline == null) { // failed before the baseline: growth is measured from where it stopped
                baseline = List.of(sample(a, done), sample(b, done));
                samples.addAll(baseline);
            }
            List<Sample> last = samples.subList(samples.size() - 2, samples.size());
            // The heap from the lesser of the last two samples after the baseline: one sample can still land on a
            // transient (seen in CI: 21.0 MiB after 150 migrations, 23.6 after 200, baseline 20.6), a leak raises both.
            List<Sample> before = samples.size() >= 4 && samples.get(samples.size() - 4).after() > baseline.get(0).after()
                    ? samples.subList(samples.size() - 4, samples.size() - 2) : last;
            long fdGrowth = Long.MIN_VALUE;
            long threadGrowth = Long.MIN_VALUE;
            double heapGrowth = Double.NEGATIVE_INFINITY;
            for (int k = 0; k < 2; k++) {
                fdGrowth = Math.max(fdGrowth, last.get(k).fds() - baseline.get(k).fds());
                threadGrowth = Math.max(threadGrowth, last.get(k).threads() - baseline.get(k).threads());
                long heap = Math.min(last.get(k).heapBytes(), before.get(k).heapBytes());
                heapGrowth = Math.max(heapGrowth, 100.0 * (heap - baseline.get(k).heapBytes()) / baseline.get(k).heapBytes());
            }
            long wrongPages = -1; // unknown after a failure: where the VM is depends on the phase it failed in
            if (failure == null) {
                AgentProcess holder = from; // swapped after each completed migration: the VM is on `from`
                CheckVmMemoryResponse check = VmServiceGrpc.newBlockingStub(holder.channel())
                        .withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS)
                        .checkVmMemory(CheckVmMemoryRequest.newBuilder().setName(vm.getName()).build());
                wrongPages = check.getWrongPages();
                if (wrongPages != 0) {
                    failure = "the guest's self-check found " + wrongPages + " wrong pages";
                }
            }
            if (failure == null && fdGrowth > 0) {
                failure = "open file descriptors grew by " + fdGrowth + " after the baseline";
            }
            if (failure == null && threadGrowth > 0) {
                failure = "threads grew by " + threadGrowth + " after the baseline";
            }
            if (failure == null && heapGrowth > maxHeapGrowth) {
                failure = String.format(Locale.ROOT, "heap after a full GC grew by %.1f %% (most %.1f %%)", heapGrowth,
                        maxHeapGrowth);
            }
            ObjectNode o = Output.object();
            o.put("backend", vm.getBackend().name().toLowerCase(Locale.ROOT));
            o.put("mode", mode.toLowerCase(Locale.ROOT));
            o.put("memory_bytes", memory.bytes());
            o.put("migrations", done);
            o.put("verified", verified);
            o.put("wrong_pages", wrongPages);
            List<Double> sorted = downtimes.stream().sorted().toList();
            o.put("downtime_ms_p50", sorted.isEmpty() ? 0 : sorted.get(sorted.size() / 2));
            o.put("downtime_ms_max", sorted.isEmpty() ? 0 : sorted.get(sorted.size() - 1));
            o.put("baseline_after", baseline.get(0).after());
            o.put("fd_growth", fdGrowth);
            o.put("thread_growth", threadGrowth);
            o.put("heap_growth_percent", Math.round(heapGrowth * 100) / 100.0);
            ArrayNode all = o.putArray("samples");
            samples.forEach(s -> all.add(s.toJson()));
            if (failure != null) {
                o.put("failure", failure);
            }
            if (!json) {
                say("%s", failure == null ? "soak passed" : "soak FAILED: " + failure);
                o.remove("samples"); // printed above, one line each
            }
            Output.print(o, json);
            return failure == null ? 0 : 1;
        }
    }

    static List<MigrationMode> modes(String s) {
        return switch (s.toLowerCase(Locale.ROOT)) {
            case "mixed" -> List.of(MigrationMode.PRECOPY, MigrationMode.POSTCOPY, MigrationMode.HYBRID);
            default -> List.of(Main.mode(s));
        };
    }

    private static Migration migrate(AgentProcess from, AgentProcess to, String vm, String id, MigrationMode mode) {
        var stub = MigrationServiceGrpc.newBlockingStub(from.channel());
        Migration created = stub.withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS).createMigration(
                CreateMigrationRequest.newBuilder().setMigrationId(id).setMigration(Migration.newBuilder().setVm(vm)
                        .setDestinationAddress(to.controlAddress()).setMode(mode)
                        // A soak looks for leaks, not convergence: on a loaded host precopy copies the rest anyway.
                        .setPolicy(mode == MigrationMode.PRECOPY ? MigrationPolicy.newBuilder().setOnNoConvergence(
                                MigrationPolicy.NoConvergenceAction.CONTINUE) : MigrationPolicy.newBuilder()))
                        .build());
        Iterator<Migration> it = stub.withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS).watchMigration(
                WatchMigrationRequest.newBuilder().setName(created.getName()).build());
        Migration last = created;
        while (it.hasNext()) {
            last = it.next(); // the stream ends after the snapshot with the terminal phase
        }
        return last;
    }

    /** One agent's file descriptors, threads and heap after a full GC. */
    static Sample sample(AgentProcess agent, int after) throws IOException, InterruptedException {
        long pid = agent.pid();
        // jcmd first: the attach listener it starts in the agent is then part of every count. The least of three full
        // GCs: a single one's result varies by a few MiB with what happens to be in flight (gRPC's and the page
        // streams' buffers), as much as a 10 % limit on a 20 MiB heap.
        long heap = Long.MAX_VALUE;
        for (int i = 0; i < 3; i++) {
            jcmd(pid, "GC.run");
            heap = Math.min(heap, heapUsed(jcmd(pid, "GC.heap_info")));
        }
        long fds;
        try (Stream<Path> l = Files.list(Path.of("/proc", Long.toString(pid), "fd"))) {
            fds = l.count();
        }
        long threads = 0;
        long total = 0;
        try (Stream<Path> tasks = Files.list(Path.of("/proc", Long.toString(pid), "task"))) {
            for (Path t : tasks.toList()) {
                String name;
                try {
                    name = Files.readString(t.resolve("comm")).strip();
                } catch (IOException ended) {
                    continue; // the thread ended while listed
                }
                total++;
                if (ELASTIC_THREADS.stream().noneMatch(name::startsWith)) {
                    threads++;
                }
            }
        }
        return new Sample(after, agent.name(), fds, threads, total, heap);
    }

    private static final Pattern USED = Pattern.compile("total \\d+K, used (\\d+)K");

    /**
     * The Java heap in use, from {@code GC.heap_info}: the sum of every generation's or region set's "total ...K,
     * used ...K" (Parallel: PSYoungGen and ParOldGen; G1: the one heap line); metaspace is not heap and says
     * "used" without a "total" before it.
     */
    static long heapUsed(String heapInfo) {
        long used = 0;
        boolean any = false;
        for (String line : heapInfo.split("\n")) {
            if (line.contains("Metaspace") || line.contains("class space")) {
                continue;
            }
            Matcher m = USED.matcher(line);
            if (m.find()) {
                used += Long.parseLong(m.group(1)) << 10;
                any = true;
            }
        }
        if (!any) {
            throw new IllegalStateException("jcmd GC.heap_info printed no heap usage: " + heapInfo.strip());
        }
        return used;
    }

    private static String jcmd(long pid, String command) throws IOException, InterruptedException {
        Path jcmd = Path.of(System.getProperty("java.home"), "bin", "jcmd");
        if (!Files.isExecutable(jcmd)) {
            throw new IllegalStateException("ferry soak reads the agents' heap with jcmd, which this Java ("
                    + System.getProperty("java.home") + ") lacks: run it with a JDK");
        }
        Process p = new ProcessBuilder(jcmd.toString(), Long.toString(pid), command).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
            p.destroyForcibly();
            throw new IllegalStateException("jcmd " + pid + " " + command + " failed: " + out.strip());
        }
        return out;
    }

    private static double millis(com.google.protobuf.Duration d) {
        return Math.round((d.getSeconds() * 1e3 + d.getNanos() / 1e6) * 100) / 100.0;
    }

    private void say(String fmt, Object... args) {
        (json ? System.err : System.out).println(String.format(Locale.ROOT, fmt, args));
    }
}
