package dev.ferry.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.ferry.guest.AccessPattern;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.control.restore.OnDemandRestore;
import dev.ferry.dataplane.postcopy.PostcopyPager;
import dev.ferry.backends.Backends;
import dev.ferry.vm.Backend;
import dev.ferry.vm.GuestBackend;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.Snapshot;
import dev.ferry.vm.VmConfig;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code ferry vm ...}: an agent's VMs ({@code --agent}, see {@link RemoteVmCommands}), or a throw-away micro-VM in
 * this process ({@code run}, and {@code restore} without {@code --agent}).
 */
@Command(name = "vm", description = "Manage an agent's VMs (--agent HOST:PORT), or run a micro-VM in this process (run).",
        subcommands = {RemoteVmCommands.Create.class, RemoteVmCommands.ListVms.class, RemoteVmCommands.Get.class,
                RemoteVmCommands.Pause.class, RemoteVmCommands.Resume.class, RemoteVmCommands.Delete.class,
                RemoteVmCommands.Check.class, RemoteVmCommands.Snapshot.class, VmCommand.Run.class,
                VmCommand.Restore.class})
final class VmCommand {

    /** Options every in-process VM run shares. */
    static final class RunOptions {
        @Option(names = "--seconds", defaultValue = "3", description = "How long the guest is measured, after a fresh guest's fill (default ${DEFAULT-VALUE}).")
        double seconds;

        @Option(names = "--json", description = "Print the summary as one JSON object on the last line.")
        boolean json;

        @Option(names = "--console", description = "Copy the guest's serial console to stderr.")
        boolean console;

        @picocli.CommandLine.Mixin
        BackendOption backend = new BackendOption();
    }

    @Command(name = "run", mixinStandardHelpOptions = true,
            description = "Boot the guest workload, let it run, check its memory, print a summary.")
    static final class Run implements Callable<Integer> {
        @Option(names = "--memory", defaultValue = "1g", description = "Guest RAM (default ${DEFAULT-VALUE}).")
        ByteSize memory;

        @Option(names = "--vcpus", defaultValue = "1", description = "vCPUs (default ${DEFAULT-VALUE}).")
        int vcpus;

        @Option(names = "--slots", description = "KVM memory slots (default: one per GiB).")
        Integer slots;

        @Option(names = "--working-set", defaultValue = "256m", description = "Bytes the workload keeps writing (default ${DEFAULT-VALUE}).")
        ByteSize workingSet;

        @Option(names = "--dirty-rate", defaultValue = "100m",
                description = "Bytes/s the guest dirties: e.g. 100m, 0 (fill once, then quiet) or unlimited (default ${DEFAULT-VALUE}).")
        Rate dirtyRate;

        @Option(names = "--pattern", defaultValue = "random", description = "sequential, random or hot-cold (default ${DEFAULT-VALUE}).")
        String pattern;

        @Option(names = "--word-stride", defaultValue = "1", description = "Only every Nth word of a page is data, the"
                + " rest 0: 1 (default, incompressible), 2, 4 .. 512 (pages compress about N:1).")
        int wordStride;

        @Option(names = "--report-period", defaultValue = "1ms", description = "Guest progress report period, e.g. 1ms, 500us (default ${DEFAULT-VALUE}).")
        String reportPeriod;

        @Option(names = "--snapshot", description = "After the run, save a snapshot (memory + state) into this directory.")
        Path snapshot;

        @picocli.CommandLine.Mixin
        RunOptions run = new RunOptions();

        @Override
        public Integer call() throws Exception {
            WorkloadSpec spec = new WorkloadSpec(workingSet.bytes(), dirtyRate.bytesPerSecond(), dirtyRate.unlimited(),
                    AccessPattern.parse(pattern), Durations.parse(reportPeriod), 0x5eed, 100, 900, wordStride);
            VmConfig config = slots == null ? VmConfig.of(vcpus, memory.bytes(), spec)
                    : new VmConfig(vcpus, memory.bytes(), slots, spec);
            try (GuestVm vm = run.backend.openOne().create(config, Console.sink(run.console))) {
                ObjectNode out = VmRunner.runAndMeasure(vm, run.seconds, true);
                if (snapshot != null) {
                    vm.pause();
                    try {
                        Snapshot.write(vm, snapshot);
                        out.put("snapshot", snapshot.toAbsolutePath().toString());
                    } catch (java.io.IOException e) {
                        // The guest is not the snapshot's to lose: it runs on, and its own check says it is whole.
                        vm.resume();
                        long wrong = vm.probe().orElseThrow().selfCheck(java.time.Duration.ofSeconds(120));
                        System.err.println("ferry: " + e.getMessage());
                        out.put("snapshot_error", e.getMessage());
                        out.put("guest_running_after_snapshot_error", !vm.paused());
                        out.put("wrong_pages_after_snapshot_error", wrong);
                        Output.print(out, run.json);
                        return 1;
                    }
                }
                Output.print(out, run.json);
                return out.get("wrong_pages").asLong() == 0 ? 0 : 1;
            }
        }
    }

    @Command(name = "restore", mixinStandardHelpOptions = true,
            description = "With --agent: restore a snapshot under the agent's --snapshot-dir as a new VM there. Without:"
                    + " resume a snapshot written by 'vm run --snapshot' in this process, let it run, print the same summary.")
    static final class Restore implements Callable<Integer> {
        @Parameters(index = "0", description = "Snapshot directory (with --agent: on the agent's host, relative to its snapshot directory or inside it).")
        String dirName;

        @Option(names = "--agent", description = "Restore on this agent (control-plane HOST:PORT) instead of in this process.")
        String agent;

        @Option(names = "--name", description = "With --agent: the restored VM's name, vms/ID or ID (default: the agent picks one).")
        String name;

        @picocli.CommandLine.Mixin
        dev.ferry.security.TlsOptions tls = new dev.ferry.security.TlsOptions();

        Path dir;

        @picocli.CommandLine.Spec
        picocli.CommandLine.Model.CommandSpec spec;

        @picocli.CommandLine.Mixin
        RunOptions run = new RunOptions();

        @Option(names = "--on-demand", description = "Resume at once; read each page from the snapshot when the guest first touches it (userfaultfd).")
        boolean onDemand;

        @Override
        public Integer call() throws Exception {
            if (agent != null) {
                for (String local : new String[] {"--seconds", "--console", "--backend"}) {
                    if (spec.commandLine().getParseResult().hasMatchedOption(local)) {
                        throw new IllegalArgumentException(local + " applies only to a restore in this process, not"
                                + " with --agent (the agent runs the VM on the backend that saved it)");
                    }
                }
                AgentTarget target = new AgentTarget();
                target.agent = agent;
                target.json = run.json;
                target.tls = tls;
                return RemoteVmCommands.restore(target, dirName, name, onDemand);
            }
            if (name != null) {
                throw new IllegalArgumentException("--name applies only with --agent");
            }
            dir = Path.of(dirName);
            if (onDemand) {
                return restoreOnDemand(this);
            }
            JsonNode labels = labelsOf(dir);
            try (GuestVm vm = Snapshot.restore(dir, backendFor(dir, run.backend), Console.sink(run.console))) {
                long before = vm.probe().orElseThrow().guestCounter();
                ObjectNode out = VmRunner.runAndMeasure(vm, run.seconds, false);
                out.put("restored_from", dir.toAbsolutePath().toString());
                out.set("labels", labels);
                out.put("guest_counter_at_restore", before);
                Output.print(out, run.json);
                return out.get("wrong_pages").asLong() == 0 && vm.probe().orElseThrow().guestCounter() > before ? 0 : 1;
            }
        }
    }

    private VmCommand() {}

    /** A snapshot restores on the backend that saved it; --backend may only confirm that one. */
    static GuestBackend backendFor(Path dir, BackendOption option) throws Exception {
        Backend saved = Snapshot.backendOf(dir);
        if (option.choice != Backends.Choice.AUTO && !option.choice.name().equals(saved.name())) {
            throw new IllegalArgumentException("the snapshot in " + dir + " was saved by the " + saved.cliName()
                    + " backend: it restores only there, not on --backend " + option.choice.name().toLowerCase());
        }
        return Backends.open(Backends.Choice.valueOf(saved.name())).preferred();
    }

    /** The snapshot's labels (from the agent's VM it was taken of), read before any guest runs. */
    static JsonNode labelsOf(Path dir) throws java.io.IOException {
        return Output.JSON.valueToTree(Snapshot.labelsOf(dir));
    }

    static int restoreOnDemand(Restore r) throws Exception {
        JsonNode labels = labelsOf(r.dir);
        try (OnDemandRestore od = OnDemandRestore.start(r.dir, backendFor(r.dir, r.run.backend),
                Console.sink(r.run.console))) {
            GuestVm vm = od.vm();
            ObjectNode out = VmRunner.runAndMeasure(vm, r.run.seconds, false);
            PostcopyPager.Stats st = od.pager().stats();
            out.put("restored_from", r.dir.toAbsolutePath().toString());
            out.set("labels", labels);
            out.put("on_demand", true);
            out.put("restore_ms", od.restoreNanos() / 1e6);
            out.put("postcopy_faults", st.faults());
            out.put("fault_latency_us_p50", st.p50Micros());
            out.put("fault_latency_us_p99", st.p99Micros());
            out.put("fault_latency_us_max", st.maxMicros());
            out.put("vcpu_blocked_ms", st.blockedTime().toNanos() / 1e6);
            out.put("pages_still_on_disk", od.pager().missingPages());
            Output.print(out, r.run.json);
            return out.get("wrong_pages").asLong() == 0 ? 0 : 1;
        }
    }


}
