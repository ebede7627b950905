package dev.ferry.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.control.link.LinkSpec;
import dev.ferry.control.link.TwoHostLink;
import dev.ferry.control.migration.FaultInjection;
import dev.ferry.v1.CheckVmMemoryRequest;
import dev.ferry.v1.CheckVmMemoryResponse;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WatchMigrationRequest;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code ferry demo}: two agents as separate processes on loopback, a VM on the source, a live
 * migration to the destination, and proof that the guest kept running and lost nothing.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Start two agents on loopback, run a guest on one, migrate it live to the other, verify it.")
final class DemoCommand implements Callable<Integer> {
    @Option(names = "--mode", defaultValue = "precopy", description = "precopy (default), postcopy, hybrid or auto.")
    MigrationMode m;

    @Option(names = "--memory", defaultValue = "1g", description = "Guest RAM (default ${DEFAULT-VALUE}).")
    ByteSize memory;

    @Option(names = "--vcpus", defaultValue = "1", description = "vCPUs (default ${DEFAULT-VALUE}).")
    int vcpus;

    @Option(names = "--working-set", defaultValue = "256m", description = "Bytes the guest keeps writing (default ${DEFAULT-VALUE}).")
    ByteSize workingSet;

    @Option(names = "--dirty-rate", defaultValue = "100m", description = "Guest dirty rate: 100m, 0 or unlimited (default ${DEFAULT-VALUE}).")
    Rate dirtyRate;

    @Option(names = "--pattern", defaultValue = "random", description = "sequential, random or hot-cold (default ${DEFAULT-VALUE}).")
    String pattern;

    @Option(names = "--word-stride", defaultValue = "1", description = "Only every Nth word of a guest page is data,"
            + " the rest 0: 1 (default, incompressible), 2, 4 .. 512 (pages compress about N:1).")
    int wordStride;

    @Option(names = "--max-downtime", defaultValue = "50ms", description = "Policy: longest acceptable pause (default ${DEFAULT-VALUE}; the API default is 300ms).")
    String maxDowntime;

    @Option(names = "--streams", defaultValue = "4", description = "Parallel data-plane streams (default ${DEFAULT-VALUE}).")
    int streams;

    @Option(names = "--bandwidth", defaultValue = "0", description = "Bandwidth limit in bytes/s, e.g. 500m; 0 = none.")
    ByteSize bandwidth;

    @Option(names = "--settle", defaultValue = "1s", description = "How long the guest runs before migrating (default ${DEFAULT-VALUE}).")
    String settle;

    @Option(names = "--after", defaultValue = "1s", description = "How long to watch the guest on the destination (default ${DEFAULT-VALUE}).")
    String after;

    @Option(names = "--auto-converge", description = "Policy: throttle the guest's vCPUs while it dirties memory"
            + " faster than precopy sends it.")
    boolean autoConverge;

    @Option(names = "--compression", defaultValue = "auto", converter = CompressionFlag.class,
            description = CompressionFlag.DESCRIPTION)
    MigrationPolicy.PageCompression compression;

    @Option(names = "--json", description = "Print the result as one JSON object on the last line.")
    boolean json;

    @Option(names = "--inject", defaultValue = "none", paramLabel = "FAULT",
            description = "Inject a fault into the migration to show verification catches it: none (default) or"
                    + " drop-dirty-page (the source agent leaves one stale page on the destination; the migration must"
                    + " end FAILED with DATA_LOSS and the guest keep running on the source).")
    String inject;

    @Option(names = "--link", paramLabel = "SPEC",
            description = "Run the agents on two hosts joined by a shaped link (network namespaces and a veth pair;"
                    + " needs root, iproute2, and nftables for loss), e.g. 'rate 1gbit loss 0.1%%'. Pages, faults and"
                    + " control calls between the agents cross the link; delay is refused (no netem in this kernel).")
    String link;

    @Option(names = "--agent-jvm-arg", description = "Extra JVM argument for both agents (repeatable), e.g. to profile them.")
    List<String> agentJvmArgs = new java.util.ArrayList<>();

    @picocli.CommandLine.Mixin
    BackendOption backend = new BackendOption();

    @Override
    public Integer call() throws Exception {
        backend.open(); // fail here, in one line, if no backend can run: not in two agents' logs
        FaultInjection fault = FaultInjection.parse(inject);
        LinkSpec spec = link == null ? null : LinkSpec.parse(link); // delay refused here, saying why
        if (spec != null) {
            TwoHostLink.unavailableReason(spec).ifPresent(why -> {
                throw new IllegalStateException("--link cannot be set up here: " + why);
            });
        }
        Path logs = Files.createTempDirectory("ferry-demo-");
        say("starting two agents (logs in %s)", logs);
        // The demo runs as deployed: mutual TLS with certificates of its own trial CA.
        Path certs = logs.resolve("certs");
        dev.ferry.security.CertificateAuthority.init(certs, List.of(),
                spec == null ? List.of() : List.of(TwoHostLink.A_LINK_ADDRESS, TwoHostLink.B_LINK_ADDRESS));
        dev.ferry.security.TransportSecurity controller = dev.ferry.security.TransportSecurity.mutualTls(
                dev.ferry.security.TlsFiles.in(certs, "controller"));
        List<String> agentArgs = new java.util.ArrayList<>(List.of("--backend", backend.choice.name().toLowerCase(Locale.ROOT)));
        agentArgs.addAll(dev.ferry.security.TlsOptions.flags(dev.ferry.security.TlsFiles.in(certs, "agent")));
        List<String> sourceArgs = new java.util.ArrayList<>(agentArgs);
        if (fault != FaultInjection.NONE) {
            sourceArgs.addAll(List.of("--inject-fault", fault.cliName())); // only the source injects
            say("fault injection: the source agent runs with --inject-fault %s", fault.cliName());
        }
        try (TwoHostLink hosts = spec == null ? null : TwoHostLink.create(spec);
                AgentProcess src = hosts == null
                        ? AgentProcess.start("source", logs.resolve("source.log"), agentJvmArgs, sourceArgs, controller)
                        : AgentProcess.start("source", logs.resolve("source.log"), hosts.inA(List.of()),
                                TwoHostLink.A_LINK_ADDRESS, agentJvmArgs, sourceArgs, controller);
                AgentProcess dst = hosts == null
                        ? AgentProcess.start("destination", logs.resolve("destination.log"), agentJvmArgs, agentArgs,
                                controller)
                        : AgentProcess.start("destination", logs.resolve("destination.log"), hosts.inB(List.of()),
                                TwoHostLink.B_LINK_ADDRESS, agentJvmArgs, agentArgs, controller)) {
            if (hosts != null) {
                say("two hosts in network namespaces, joined by a link shaped as '%s' (source %s, destination %s)",
                        link, TwoHostLink.A_LINK_ADDRESS, TwoHostLink.B_LINK_ADDRESS);
            }
            say("mutual TLS with certificates from %s", certs);
            say("source      control %s  data %s  pid %d", src.controlAddress(), src.dataAddress(), src.pid());
            say("destination control %s  data %s  pid %d", dst.controlAddress(), dst.dataAddress(), dst.pid());
            // This process only watches: its progress rendering must not take CPU from the agents it measures.
            dev.ferry.linux.ThreadPriority.setProcess(dev.ferry.linux.ThreadPriority.OBSERVER);
            var srcVms = VmServiceGrpc.newBlockingStub(src.channel());
            var dstVms = VmServiceGrpc.newBlockingStub(dst.channel());
            dev.ferry.v1.WorkloadSpec.Builder w = dev.ferry.v1.WorkloadSpec.newBuilder()
                    .setWorkingSetBytes(workingSet.bytes())
                    .setAccessPattern(dev.ferry.v1.WorkloadSpec.AccessPattern.valueOf(
                            pattern.toUpperCase(Locale.ROOT).replace('-', '_')))
                    .setWordStride(wordStride);
            if (dirtyRate.unlimited()) {
                w.setUnlimitedDirtyRate(true);
            } else {
                w.setDirtyRateBytesPerSecond(dirtyRate.bytesPerSecond());
            }
            Vm vm = srcVms.createVm(CreateVmRequest.newBuilder().setVmId("demo").setVm(Vm.newBuilder()
                    .setVcpuCount(vcpus).setMemoryBytes(memory.bytes()).setWorkload(w)).build());
            String backendName = vm.getBackend().name().toLowerCase(Locale.ROOT);
            say("created %s on the source (%s backend): %d MiB, %d vCPU, working set %d MiB, dirty rate %s",
                    vm.getName(), backendName, memory.bytes() >> 20, vcpus, workingSet.bytes() >> 20,
                    dirtyRate.unlimited() ? "unlimited" : (dirtyRate.bytesPerSecond() >> 20) + " MiB/s");
            Thread.sleep(Durations.parse(settle).toMillis()); // let the workload run for the requested time
            long before = srcVms.getVm(GetVmRequest.newBuilder().setName(vm.getName()).build()).getGuestProgress();

            var migrations = MigrationServiceGrpc.newBlockingStub(src.channel());
            MigrationPolicy policy = MigrationPolicy.newBuilder()
                    .setMaxDowntime(dev.ferry.control.vm.VmProtos.duration(Durations.parse(maxDowntime).toNanos()))
                    .setDataStreams(streams).setBandwidthLimitBytesPerSecond(bandwidth.bytes())
                    .setAutoConverge(dev.ferry.v1.AutoConverge.newBuilder().setEnabled(autoConverge))
                    .setPageCompression(compression).build();
            Migration created = migrations.createMigration(CreateMigrationRequest.newBuilder().setMigrationId("demo")
                    .setMigration(Migration.newBuilder().setVm(vm.getName()).setDestinationAddress(dst.controlAddress())
                            .setMode(m).setPolicy(policy)).build());
            Migration result = watch(migrations, created.getName());

            ObjectNode o = Output.object();
            o.put("mode", m.name().toLowerCase(Locale.ROOT));
            o.put("backend", backendName);
            o.put("tls", controller.tls() && src.tls() && dst.tls());
            o.put("memory_bytes", memory.bytes());
            if (spec != null) {
                o.put("link", link.trim());
            }
            o.put("phase", result.getPhase().name());
            var st = result.getStatistics();
            o.put("total_ms", millis(st.getTotalTime()));
            o.put("downtime_ms", millis(st.getDowntime()));
            o.put("guest_pause_ms", millis(st.getGuestPause()));
            if (st.hasDowntimeBreakdown()) { // where the downtime went, step by step
                var d = st.getDowntimeBreakdown();
                ObjectNode steps = o.putObject("downtime_breakdown_ms");
                steps.put("pause", millis(d.getPause()));
                steps.put("dirty_harvest", millis(d.getDirtyHarvest()));
                steps.put("last_pages", millis(d.getLastPages()));
                steps.put("device_state_save", millis(d.getDeviceStateSave()));
                steps.put("device_state_transfer", millis(d.getDeviceStateTransfer()));
                steps.put("switchover_hops", millis(d.getSwitchoverHops()));
                steps.put("destination_resume", millis(d.getDestinationResume()));
                o.put("last_pages_count", d.getLastPagesCount());
            }
            o.put("transferred_bytes", st.getTransferredBytes());
            o.put("zero_pages", result.getProgress().getZeroPages());
            o.put("rounds", st.getRounds());
            o.put("max_cpu_throttle_percent", st.getMaxCpuThrottlePercent());
            o.put("compression", compression.name().toLowerCase(Locale.ROOT));
            o.put("compressed_pages", st.getCompressedPages());
            o.put("compressed_bytes", st.getCompressedBytes());
            if (result.hasModeChoice()) {
                var c = result.getModeChoice();
                o.put("chosen_mode", c.getMode().name().toLowerCase(Locale.ROOT)
                        + (c.getAutoConverge() ? "+auto-converge" : ""));
                o.put("predicted_total_ms", millis(c.getPredictedTotalTime()));
                o.put("predicted_downtime_ms", millis(c.getPredictedDowntime()));
                o.put("memory_in_place_ms", inPlaceMillis); // what predicted_total_ms predicts
                o.put("mode_choice_reason", c.getReason());
            }
            o.put("throughput_mib_s", Math.round(st.getThroughputBytesPerSecond() / 1048576.0 * 10) / 10.0);
            o.put("device_state_bytes", st.getDeviceStateBytes());
            o.put("memory_digest_verified", st.getMemoryVerified());
            o.put("verification_method", st.getVerificationMethod().name());
            o.put("pages_compared", st.getPagesCompared());
            o.put("pages_written_after_resume", st.getPagesWrittenAfterResume());
            o.put("chunks_differing", st.getChunksDiffering());
            if (fault != FaultInjection.NONE) {
                o.put("inject", fault.cliName());
            }
            if (m != MigrationMode.PRECOPY && st.hasPostcopy()) {
                var pc = st.getPostcopy();
                o.put("resume_ms", millis(st.getDowntime())); // source pause to destination resume
                o.put("postcopy_faults", pc.getPageFaults());
                o.put("fault_latency_us_p50", pc.getFaultLatencyP50Micros());
                o.put("fault_latency_us_p99", pc.getFaultLatencyP99Micros());
                o.put("fault_latency_us_max", pc.getFaultLatencyMaxMicros());
                o.put("background_bytes", pc.getBackgroundBytes());
                o.put("background_pages_dropped", pc.getBackgroundPagesDropped());
                o.put("vcpu_blocked_ms", millis(pc.getVcpuBlockedTime()));
                o.put("guest_max_stall_ms", millis(pc.getGuestMaxStall()));
                o.put("pages_written_since_resume", pc.getPagesWrittenSinceResume());
                o.put("unwritten_pages_verified", pc.getUnwrittenPagesVerified());
            }
            boolean verified = false;
            if (result.getPhase() == Migration.Phase.COMPLETED) {
                String dstVm = result.getDestinationVm();
                long c1 = dstVms.getVm(GetVmRequest.newBuilder().setName(dstVm).build()).getGuestProgress();
                Thread.sleep(Durations.parse(after).toMillis()); // watch the guest run on the destination
                long c2 = dstVms.getVm(GetVmRequest.newBuilder().setName(dstVm).build()).getGuestProgress();
                CheckVmMemoryResponse check = dstVms.checkVmMemory(CheckVmMemoryRequest.newBuilder().setName(dstVm).build());
                say("guest on the destination: progress %d -> %d (before migration %d); self-check: %d wrong of %d pages",
                        c1, c2, before, check.getWrongPages(), check.getCheckedPages());
                o.put("guest_progress_before", before);
                o.put("guest_progress_after", c2);
                o.put("wrong_pages", check.getWrongPages());
                verified = st.getMemoryVerified() && c2 > c1 && c1 >= before && check.getWrongPages() == 0;
            } else {
                io.grpc.Status.Code code = io.grpc.Status.fromCodeValue(result.getError().getCode()).getCode();
                say("migration ended %s: %s", result.getPhase(), dev.ferry.v1.MigrationErrors.summary(result));
                o.put("error_code", code.name());
                if (srcVms.getVm(GetVmRequest.newBuilder().setName(vm.getName()).build()).getState() == Vm.State.RUNNING) {
                    // The guest should be back on the source, whole: its own check says whether it is.
                    CheckVmMemoryResponse check = srcVms.checkVmMemory(CheckVmMemoryRequest.newBuilder()
                            .setName(vm.getName()).build());
                    say("guest back on the source: self-check %d wrong of %d pages", check.getWrongPages(),
                            check.getCheckedPages());
                    o.put("source_vm_running", true);
                    o.put("wrong_pages", check.getWrongPages());
                } else {
                    o.put("source_vm_running", false);
                }
            }
            o.put("verified", verified);
            if (!json) {
                say("downtime %.1f ms, guest pause %.1f ms, %d rounds, %.0f MiB/s, verified: %s",
                        o.get("downtime_ms").asDouble(), o.get("guest_pause_ms").asDouble(), st.getRounds(),
                        o.get("throughput_mib_s").asDouble(), verified);
                if (st.getCompressedPages() > 0) {
                    say("LZ4: %d pages (%d MiB) went as %d MiB", st.getCompressedPages(),
                            st.getCompressedPages() >> 8, st.getCompressedBytes() >> 20);
                }
            }
            Output.print(o, json);
            return verified ? 0 : 1;
        }
    }

    private static double millis(com.google.protobuf.Duration d) {
        return Math.round((d.getSeconds() * 1e3 + d.getNanos() / 1e6) * 100) / 100.0;
    }

    /** Elapsed since create_time when the migration first reported VERIFYING or COMPLETED; -1 before. */
    private double inPlaceMillis = -1;

    private Migration watch(MigrationServiceGrpc.MigrationServiceBlockingStub stub, String name) {
        Migration last = null;
        try (ProgressBar bar = new ProgressBarBuilder().setTaskName("migrating").setInitialMax(100)
                .setStyle(ProgressBarStyle.ASCII).setUnit(" MiB", 1).setConsumer(new me.tongfei.progressbar.ConsoleProgressBarConsumer(System.err))
                .build()) {
            Iterator<Migration> it = stub.watchMigration(WatchMigrationRequest.newBuilder().setName(name)
                    .setProgressInterval(dev.ferry.control.vm.VmProtos.duration(100_000_000L)).build());
            while (it.hasNext()) {
                last = it.next();
                var p = last.getProgress();
                if (inPlaceMillis < 0 && (last.getPhase() == Migration.Phase.VERIFYING
                        || last.getPhase() == Migration.Phase.COMPLETED)) {
                    inPlaceMillis = millis(p.getElapsed()); // the guest runs there with all its memory
                }
                long sentMib = p.getBytesSent() >> 20;
                bar.maxHint(sentMib + (p.getBytesRemaining() >> 20));
                bar.stepTo(sentMib);
                bar.setExtraMessage(String.format(" %s round %d, %d MiB/s", last.getPhase(), p.getRound(),
                        p.getTransferRateBytesPerSecond() >> 20));
            }
        }
        return last;
    }

    private void say(String fmt, Object... args) {
        if (!json) {
            System.out.println(String.format(fmt, args));
        } else {
            System.err.println(String.format(fmt, args));
        }
    }
}
