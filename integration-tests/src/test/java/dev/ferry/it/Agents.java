package dev.ferry.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.ferry.control.agent.AgentProcess;
import dev.ferry.security.CertificateAuthority;
import dev.ferry.security.TlsFiles;
import dev.ferry.security.TlsOptions;
import dev.ferry.security.TransportSecurity;
import dev.ferry.control.vm.VmProtos;
import dev.ferry.v1.CheckVmMemoryRequest;
import dev.ferry.v1.CheckVmMemoryResponse;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.ListVmsRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WatchMigrationRequest;
import dev.ferry.v1.WorkloadSpec;
import dev.ferry.vm.Backend;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/** Test helpers over two real agent processes. */
final class Agents {
    static final long MIB = 1 << 20;

    private Agents() {}

    private static Path certs;

    /**
     * The certificates of this test run ({@code ferry certs init}'s files), made once: every agent
     * listens with agent.crt, the tests call agents with controller.crt.
     */
    static synchronized Path certs() throws IOException {
        if (certs == null) {
            Path dir = Files.createTempDirectory(Path.of("target").toAbsolutePath(), "it-certs-");
            // Also valid at the two-host link's addresses, where agents in network namespaces listen.
            CertificateAuthority.init(dir, List.of(), List.of(dev.ferry.control.link.TwoHostLink.A_LINK_ADDRESS,
                    dev.ferry.control.link.TwoHostLink.B_LINK_ADDRESS));
            certs = dir;
        }
        return certs;
    }

    static TlsFiles files(String party) throws IOException {
        return TlsFiles.in(certs(), party);
    }

    /** How the tests dial agents: as a controller, over mutual TLS. */
    static TransportSecurity controller() throws IOException {
        return TransportSecurity.mutualTls(files("controller"));
    }

    /** An agent process running guests on {@code backend} only, over mutual TLS; its log goes to target/agent-logs. */
    static AgentProcess start(String name, Backend backend, String... agentArgs) throws IOException {
        return startWith(files("agent"), name, backend, agentArgs);
    }

    /** As above, the agent presenting {@code serverFiles}' certificate instead of the agent one. */
    static AgentProcess startWith(TlsFiles serverFiles, String name, Backend backend, String... agentArgs)
            throws IOException {
        List<String> args = new java.util.ArrayList<>(List.of("--backend", backend.cliName()));
        args.addAll(TlsOptions.flags(serverFiles));
        args.addAll(List.of(agentArgs));
        return AgentProcess.start(name, log(name + "-" + backend.cliName()), List.of(), args, controller());
    }

    /**
     * As {@link #start}, the agent run through {@code wrapper} (e.g. {@code ip netns exec NS}) and listening on
     * {@code host}.
     */
    static AgentProcess startIn(List<String> wrapper, String host, String name, Backend backend, String... agentArgs)
            throws IOException {
        List<String> args = new java.util.ArrayList<>(List.of("--backend", backend.cliName()));
        args.addAll(TlsOptions.flags(files("agent")));
        args.addAll(List.of(agentArgs));
        return AgentProcess.start(name, log(name + "-" + backend.cliName()), wrapper, host, List.of(), args,
                controller());
    }

    /** A fresh log file for an agent of this test run. */
    static Path log(String name) throws IOException {
        Path dir = Path.of("target", "agent-logs");
        Files.createDirectories(dir);
        return dir.resolve(name + "-" + ProcessHandle.current().pid() + ".log");
    }

    /** Stops the agents that were started (a class whose start-up was skipped has nulls here). */
    static void stop(AgentProcess... agents) throws Exception {
        for (AgentProcess a : agents) {
            if (a != null) {
                a.close();
            }
        }
    }

    static VmServiceGrpc.VmServiceBlockingStub vms(AgentProcess a) {
        return VmServiceGrpc.newBlockingStub(a.channel()).withDeadlineAfter(120, TimeUnit.SECONDS);
    }

    static MigrationServiceGrpc.MigrationServiceBlockingStub migrations(AgentProcess a) {
        return MigrationServiceGrpc.newBlockingStub(a.channel()).withDeadlineAfter(120, TimeUnit.SECONDS);
    }

    static Vm createVm(AgentProcess a, String id, long memory, long workingSet, long rate, boolean unlimited) {
        return createVm(a, id, 1, memory, workingSet, rate, unlimited);
    }

    static Vm createVm(AgentProcess a, String id, int vcpus, long memory, long workingSet, long rate, boolean unlimited) {
        WorkloadSpec.Builder w = WorkloadSpec.newBuilder().setWorkingSetBytes(workingSet)
                .setAccessPattern(WorkloadSpec.AccessPattern.RANDOM);
        if (unlimited) {
            w.setUnlimitedDirtyRate(true);
        } else {
            w.setDirtyRateBytesPerSecond(rate);
        }
        return vms(a).createVm(CreateVmRequest.newBuilder().setVmId(id)
                .setVm(Vm.newBuilder().setMemoryBytes(memory).setVcpuCount(vcpus).setWorkload(w)).build());
    }

    static MigrationPolicy.Builder policy() {
        return MigrationPolicy.newBuilder();
    }

    static Migration startMigration(AgentProcess src, AgentProcess dst, String id, String vm, MigrationPolicy policy) {
        return startMigration(src, dst, id, vm, MigrationMode.PRECOPY, policy);
    }

    static Migration startMigration(AgentProcess src, AgentProcess dst, String id, String vm, MigrationMode mode,
            MigrationPolicy policy) {
        return migrations(src).createMigration(CreateMigrationRequest.newBuilder().setMigrationId(id)
                .setMigration(Migration.newBuilder().setVm(vm).setDestinationAddress(dst.controlAddress())
                        .setMode(mode).setPolicy(policy)).build());
    }

    /** Follows the migration's progress stream until {@code until} holds; returns that snapshot. */
    static Migration watchUntil(AgentProcess src, String name, Predicate<Migration> until) {
        Iterator<Migration> it = migrations(src).watchMigration(WatchMigrationRequest.newBuilder().setName(name)
                .setProgressInterval(VmProtos.duration(20_000_000L)).build());
        Migration last = null;
        while (it.hasNext()) {
            last = it.next();
            if (until.test(last)) {
                return last;
            }
        }
        fail("stream ended before the condition held; last: " + last);
        return last;
    }

    static Migration watchToEnd(AgentProcess src, String name) {
        return watchUntil(src, name, m -> m.getPhase() == Migration.Phase.COMPLETED
                || m.getPhase() == Migration.Phase.FAILED || m.getPhase() == Migration.Phase.CANCELLED);
    }

    /**
     * Proves the guest runs on {@code a} and lost nothing: its own self-check (which it can only
     * answer by executing) finds no wrong page, and its progress counter moved meanwhile.
     */
    static void assertGuestRunsIntact(AgentProcess a, String vm) {
        long p1 = vms(a).getVm(GetVmRequest.newBuilder().setName(vm).build()).getGuestProgress();
        CheckVmMemoryResponse check = vms(a).checkVmMemory(CheckVmMemoryRequest.newBuilder().setName(vm).build());
        assertEquals(0, check.getWrongPages(), "guest self-check on " + a.name());
        assertTrue(check.getCheckedPages() > 0);
        // The check itself may be answered by the loop iteration already counted in p1: the counter moves after.
        long p2 = p1;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (p2 <= p1 && System.nanoTime() < deadline) {
            p2 = vms(a).getVm(GetVmRequest.newBuilder().setName(vm).build()).getGuestProgress();
        }
        assertTrue(p2 > p1, "guest progress moves on " + a.name() + ": " + p1 + " -> " + p2);
        Vm v = vms(a).getVm(GetVmRequest.newBuilder().setName(vm).build());
        assertEquals(Vm.State.RUNNING, v.getState());
        assertEquals("", v.getMigration(), "no migration holds the VM any more");
    }

    /** Deletes every VM on {@code a}: a guest left running takes CPU from the tests after it. */
    static void deleteVms(AgentProcess a) {
        for (Vm v : vms(a).listVms(ListVmsRequest.getDefaultInstance()).getVmsList()) {
            vms(a).deleteVm(dev.ferry.v1.DeleteVmRequest.newBuilder().setName(v.getName()).build());
        }
    }

    static boolean hasVm(AgentProcess a, String vm) {
        return vms(a).listVms(ListVmsRequest.getDefaultInstance()).getVmsList().stream()
                .anyMatch(v -> v.getName().equals(vm));
    }
}
