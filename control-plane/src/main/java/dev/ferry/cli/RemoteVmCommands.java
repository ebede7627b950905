package dev.ferry.cli;

import com.google.protobuf.MessageOrBuilder;
import com.google.protobuf.util.JsonFormat;
import dev.ferry.control.vm.VmProtos;
import dev.ferry.v1.CheckVmMemoryRequest;
import dev.ferry.v1.CheckVmMemoryResponse;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.DeleteVmRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.ListVmsRequest;
import dev.ferry.v1.ListVmsResponse;
import dev.ferry.v1.PauseVmRequest;
import dev.ferry.v1.RestoreVmRequest;
import dev.ferry.v1.ResumeVmRequest;
import dev.ferry.v1.SnapshotVmRequest;
import dev.ferry.v1.SnapshotVmResponse;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WorkloadSpec;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code ferry vm create|list|get|pause|resume|delete|check|snapshot --agent HOST:PORT}: an agent's VMs, the way
 * virsh manages a host's domains. Human output is a table; {@code --json} prints the ferry.v1 messages.
 */
final class RemoteVmCommands {
    /** Creating a VM waits for its guest to fill memory; a check walks the working set. */
    private static final long CALL_SECONDS = 180;

    private RemoteVmCommands() {}

    static VmServiceGrpc.VmServiceBlockingStub stub(io.grpc.ManagedChannel ch) {
        return VmServiceGrpc.newBlockingStub(ch).withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS);
    }

    /** "web" and "vms/web" both name vms/web. */
    static String vmName(String s) {
        return s.startsWith("vms/") ? s : "vms/" + s;
    }

    static void print(MessageOrBuilder m) throws Exception {
        System.out.println(JsonFormat.printer().omittingInsignificantWhitespace().print(m));
    }

    /** One row per VM: name, state, backend, vCPUs, memory, labels, migration or error. */
    static void table(List<Vm> vms) {
        String fmt = "%-24s %-15s %-8s %5s %9s  %-24s %s%n";
        System.out.printf(fmt, "NAME", "STATE", "BACKEND", "VCPUS", "MEMORY", "LABELS", "HELD BY / ERROR");
        for (Vm v : vms) {
            String note = !v.getError().getMessage().isEmpty() ? v.getError().getMessage() : v.getMigration();
            String labels = new java.util.TreeMap<>(v.getLabelsMap()).entrySet().stream()
                    .map(e -> e.getKey() + "=" + e.getValue()).collect(java.util.stream.Collectors.joining(","));
            System.out.printf(fmt, v.getName(), v.getState().name(), v.getBackend().name().toLowerCase(Locale.ROOT),
                    v.getVcpuCount(), (v.getMemoryBytes() >> 20) + " MiB", labels.isEmpty() ? "-" : labels, note);
        }
    }

    static int show(AgentTarget t, Vm v) throws Exception {
        if (t.json) {
            print(v);
        } else {
            table(List.of(v));
        }
        return 0;
    }

    @Command(name = "create", mixinStandardHelpOptions = true, description = "Create a VM on an agent and start its guest.")
    static final class Create implements Callable<Integer> {
        @Parameters(index = "0", arity = "0..1", paramLabel = "NAME", description = "vms/ID or ID (default: the agent picks one).")
        String name;

        @Option(names = "--memory", defaultValue = "1g", description = "Guest RAM (default ${DEFAULT-VALUE}).")
        ByteSize memory;

        @Option(names = "--vcpus", defaultValue = "1", description = "vCPUs (default ${DEFAULT-VALUE}).")
        int vcpus;

        @Option(names = "--working-set", defaultValue = "256m", description = "Bytes the workload keeps writing (default ${DEFAULT-VALUE}).")
        ByteSize workingSet;

        @Option(names = "--dirty-rate", defaultValue = "100m",
                description = "Bytes/s the guest dirties: e.g. 100m, 0 or unlimited (default ${DEFAULT-VALUE}).")
        Rate dirtyRate;

        @Option(names = "--label", paramLabel = "KEY=VALUE", description = "A label (repeatable): what MigrationPolicies"
                + " select VMs by; a migrated VM keeps its labels.")
        java.util.Map<String, String> labels = new java.util.LinkedHashMap<>();

        @Option(names = "--pattern", defaultValue = "random", description = "sequential, random or hot-cold (default ${DEFAULT-VALUE}).")
        String pattern;

        @Option(names = "--word-stride", defaultValue = "1", description = "Only every Nth word of a page is data, the"
                + " rest 0: 1 (default, incompressible), 2, 4 .. 512 (pages compress about N:1).")
        int wordStride;

        @Option(names = "--backend", defaultValue = "default",
                description = "kvm, process, or default: the agent's own choice (default ${DEFAULT-VALUE}).")
        String backend;

        @Mixin
        AgentTarget target = new AgentTarget();

        @Override
        public Integer call() throws Exception {
            WorkloadSpec.Builder w = WorkloadSpec.newBuilder().setWorkingSetBytes(workingSet.bytes())
                    .setAccessPattern(WorkloadSpec.AccessPattern.valueOf(pattern.toUpperCase(Locale.ROOT).replace('-', '_')))
                    .setWordStride(wordStride);
            if (dirtyRate.unlimited()) {
                w.setUnlimitedDirtyRate(true);
            } else {
                w.setDirtyRateBytesPerSecond(dirtyRate.bytesPerSecond());
            }
            Vm.Builder vm = Vm.newBuilder().setVcpuCount(vcpus).setMemoryBytes(memory.bytes()).setWorkload(w)
                    .putAllLabels(labels);
            switch (backend.toLowerCase(Locale.ROOT)) {
                case "default" -> { }
                case "kvm" -> vm.setBackend(dev.ferry.v1.Backend.KVM);
                case "process" -> vm.setBackend(dev.ferry.v1.Backend.PROCESS);
                default -> throw new IllegalArgumentException("--backend must be kvm, process or default, got " + backend);
            }
            CreateVmRequest.Builder req = CreateVmRequest.newBuilder().setVm(vm);
            if (name != null) {
                req.setVmId(vmName(name).substring("vms/".length()));
            }
            return show(target, target.call(ch -> stub(ch).createVm(req.build())));
        }
    }

    @Command(name = "list", mixinStandardHelpOptions = true, description = "List an agent's VMs.")
    static final class ListVms implements Callable<Integer> {
        @Mixin
        AgentTarget target = new AgentTarget();

        @Override
        public Integer call() throws Exception {
            List<Vm> all = target.call(ch -> {
                List<Vm> l = new ArrayList<>();
                String token = "";
                do {
                    ListVmsResponse page = stub(ch).listVms(ListVmsRequest.newBuilder().setPageToken(token).build());
                    l.addAll(page.getVmsList());
                    token = page.getNextPageToken();
                } while (!token.isEmpty());
                return l;
            });
            if (target.json) {
                for (Vm v : all) {
                    print(v);
                }
            } else {
                table(all);
            }
            return 0;
        }
    }

    /** A command that names one VM. */
    abstract static class OneVm implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "NAME", description = "vms/ID or ID.")
        String name;

        @Mixin
        AgentTarget target = new AgentTarget();
    }

    @Command(name = "get", mixinStandardHelpOptions = true, description = "Show one VM.")
    static final class Get extends OneVm {
        @Override
        public Integer call() throws Exception {
            return show(target, target.call(ch -> stub(ch).getVm(GetVmRequest.newBuilder().setName(vmName(name)).build())));
        }
    }

    @Command(name = "pause", mixinStandardHelpOptions = true, description = "Stop a VM's vCPUs (memory is kept).")
    static final class Pause extends OneVm {
        @Override
        public Integer call() throws Exception {
            return show(target, target.call(ch -> stub(ch).pauseVm(PauseVmRequest.newBuilder().setName(vmName(name)).build())));
        }
    }

    @Command(name = "resume", mixinStandardHelpOptions = true, description = "Run a paused VM's vCPUs again.")
    static final class Resume extends OneVm {
        @Override
        public Integer call() throws Exception {
            return show(target, target.call(ch -> stub(ch).resumeVm(ResumeVmRequest.newBuilder().setName(vmName(name)).build())));
        }
    }

    @Command(name = "delete", mixinStandardHelpOptions = true, description = "Stop a VM and free its memory.")
    static final class Delete extends OneVm {
        @Override
        public Integer call() throws Exception {
            target.call(ch -> stub(ch).deleteVm(DeleteVmRequest.newBuilder().setName(vmName(name)).build()));
            if (target.json) {
                System.out.println(Output.JSON.writeValueAsString(Output.object().put("deleted", vmName(name))));
            } else {
                System.out.println("deleted " + vmName(name));
            }
            return 0;
        }
    }

    @Command(name = "check", mixinStandardHelpOptions = true,
            description = "Ask the guest to check its working set; exit 1 if any page is wrong.")
    static final class Check extends OneVm {
        @Override
        public Integer call() throws Exception {
            CheckVmMemoryResponse r = target.call(ch -> stub(ch).checkVmMemory(
                    CheckVmMemoryRequest.newBuilder().setName(vmName(name)).build()));
            if (target.json) {
                print(r);
            } else {
                System.out.printf("%s: %d pages checked, %d wrong, in %.1f ms%n", vmName(name), r.getCheckedPages(),
                        r.getWrongPages(), VmProtos.toJava(r.getDuration()).toNanos() / 1e6);
            }
            return r.getWrongPages() == 0 ? 0 : 1;
        }
    }

    @Command(name = "snapshot", mixinStandardHelpOptions = true,
            description = "Write a snapshot of a VM into DIR under the agent's --snapshot-dir (on the agent's host).")
    static final class Snapshot extends OneVm {
        @Parameters(index = "1", paramLabel = "DIR", description = "New directory, relative to the agent's snapshot directory or inside it.")
        String dir;

        @Override
        public Integer call() throws Exception {
            SnapshotVmResponse r = target.call(ch -> stub(ch).snapshotVm(SnapshotVmRequest.newBuilder()
                    .setName(vmName(name)).setSnapshotDirectory(dir).build()));
            if (target.json) {
                print(r);
            } else {
                System.out.printf("%s: snapshot in %s on the agent's host, %d MiB, vCPUs stopped %.1f ms%n",
                        vmName(name), r.getSnapshotDirectory(), r.getSizeBytes() >> 20,
                        VmProtos.toJava(r.getPauseDuration()).toNanos() / 1e6);
            }
            return 0;
        }
    }

    /** {@code ferry vm restore DIR --agent HOST:PORT}: see {@link VmCommand.Restore}, which runs it. */
    static int restore(AgentTarget target, String dir, String name, boolean onDemand) throws Exception {
        RestoreVmRequest.Builder req = RestoreVmRequest.newBuilder().setSnapshotDirectory(dir).setOnDemand(onDemand);
        if (name != null) {
            req.setVmId(vmName(name).substring("vms/".length()));
        }
        return show(target, target.call(ch -> stub(ch).restoreVm(req.build())));
    }
}
