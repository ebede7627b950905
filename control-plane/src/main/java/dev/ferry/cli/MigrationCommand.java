package dev.ferry.cli;

import dev.ferry.control.client.ReadRetries;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.util.JsonFormat;
import dev.ferry.control.vm.VmProtos;
import dev.ferry.v1.CancelMigrationRequest;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.GetMigrationLimitsRequest;
import dev.ferry.v1.GetMigrationRequest;
import dev.ferry.v1.ListMigrationsRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationLimits;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.ResumeMigrationRequest;
import dev.ferry.v1.SwitchToPostcopyRequest;
import dev.ferry.v1.WatchMigrationRequest;
import dev.ferry.security.TlsOptions;
import io.grpc.ManagedChannel;
import java.util.Iterator;
import me.tongfei.progressbar.ConsoleProgressBarConsumer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code ferry migration}: drives the MigrationService of a running agent (the source), the way a
 * controller would: create, watch, switch to postcopy, resume after a cut link, cancel.
 */
@Command(name = "migration", mixinStandardHelpOptions = true,
        description = "Drive migrations on a running agent (its control-plane address).",
        subcommands = {MigrationCommand.Create.class, MigrationCommand.Get.class, MigrationCommand.ListAll.class,
                MigrationCommand.Watch.class, MigrationCommand.SwitchToPostcopy.class, MigrationCommand.Resume.class,
                MigrationCommand.Cancel.class, MigrationCommand.SetBandwidth.class, MigrationCommand.Limits.class})
final class MigrationCommand {
    private static final long CALL_SECONDS = 60;

    /** Options every subcommand takes. */
    static final class Target {
        @Option(names = "--agent", required = true, description = "Control-plane address of the source agent, HOST:PORT.")
        String agent;

        @Option(names = "--json", description = "Print migrations as JSON (the ferry.v1.Migration message), one per line.")
        boolean json;

        @Mixin
        TlsOptions tls = new TlsOptions();

        private ManagedChannel dial() {
            try {
                return ReadRetries.apply(tls.open().channelBuilder(agent)).build();
            } catch (java.io.IOException e) {
                throw new IllegalArgumentException(e.getMessage(), e);
            }
        }

        <T> T call(java.util.function.Function<MigrationServiceGrpc.MigrationServiceBlockingStub, T> body) {
            ManagedChannel ch = dial();
            try {
                return body.apply(MigrationServiceGrpc.newBlockingStub(ch));
            } finally {
                ch.shutdownNow();
            }
        }

        /** Migration.error carries an ErrorInfo (the failing step): without its type --json could not print it. */
        private static final JsonFormat.TypeRegistry ERROR_DETAILS = JsonFormat.TypeRegistry.newBuilder()
                .add(com.google.rpc.ErrorInfo.getDescriptor()).build();

        void print(Migration m) throws InvalidProtocolBufferException {
            if (json) {
                System.out.println(JsonFormat.printer().usingTypeRegistry(ERROR_DETAILS).omittingInsignificantWhitespace()
                        .print(m));
                return;
            }
            var p = m.getProgress();
            StringBuilder line = new StringBuilder(String.format("%s  %s  %s -> %s  round %d  %d/%d MiB", m.getName(),
                    m.getPhase().name(), m.getVm(), m.getDestinationAddress(), p.getRound(), p.getBytesSent() >> 20,
                    (p.getBytesSent() + p.getBytesRemaining()) >> 20));
            if (m.hasStatistics() && m.getPhase() == Migration.Phase.COMPLETED) {
                var s = m.getStatistics();
                line.append(String.format("  downtime %.1f ms  verified %s", VmProtos.toJava(s.getDowntime()).toNanos() / 1e6,
                        s.getMemoryVerified()));
            }
            if (m.getPhase() == Migration.Phase.QUEUED) {
                line.append("  queued: ").append(m.getQueuedReason());
            }
            if (!m.getError().getMessage().isEmpty()) {
                line.append("  error: ").append(dev.ferry.v1.MigrationErrors.summary(m));
            }
            System.out.println(line);
        }

        /** Follows the migration until it ends or pauses; exit 0 only if it completed. */
        int watch(String name) throws InvalidProtocolBufferException {
            ManagedChannel ch = dial();
            try {
                Iterator<Migration> it = MigrationServiceGrpc.newBlockingStub(ch).watchMigration(
                        WatchMigrationRequest.newBuilder().setName(name)
                                .setProgressInterval(VmProtos.duration(500_000_000L)).build());
                Migration last = null;
                Migration.Phase shown = null;
                // People get a live bar (on stderr) and the final line; scripts get each phase change as JSON.
                try (ProgressBar bar = json ? null : new ProgressBarBuilder().setTaskName("in place").setInitialMax(1000)
                        .setStyle(ProgressBarStyle.ASCII).setUnit("%", 10).showSpeed(new java.text.DecimalFormat("0"))
                        .hideEta().setConsumer(new ConsoleProgressBarConsumer(System.err)).build()) {
                    while (it.hasNext()) {
                        last = it.next();
                        if (bar != null) {
                            show(bar, last);
                        } else if (last.getPhase() != shown) {
                            print(last);
                            shown = last.getPhase();
                        }
                        if (last.getPhase() == Migration.Phase.POSTCOPY_PAUSED) {
                            System.err.println("ferry: " + name + " is paused: fix the link, then `ferry migration resume "
                                    + name + "`");
                            return 1;
                        }
                    }
                }
                if (last != null && !json) {
                    print(last);
                }
                return last != null && last.getPhase() == Migration.Phase.COMPLETED ? 0 : 1;
            } finally {
                ch.shutdownNow();
            }
        }
    }

    /** The live figures of WatchMigration on one bar: memory in place, phase, rates, time left, expected downtime. */
    private static void show(ProgressBar bar, Migration m) {
        var p = m.getProgress();
        bar.stepTo(Math.round(p.getMemoryInPlacePercent() * 10));
        StringBuilder extra = new StringBuilder(String.format(" %s round %d  %d MiB/s (guest dirties %d MiB/s)",
                m.getPhase(), p.getRound(), p.getTransferRateBytesPerSecond() >> 20, p.getDirtyRateBytesPerSecond() >> 20));
        if (p.hasEstimatedTimeRemaining()) {
            extra.append(String.format("  ETA %.1f s", VmProtos.toJava(p.getEstimatedTimeRemaining()).toMillis() / 1e3));
        }
        if (p.hasExpectedDowntime() && m.getPhase() == Migration.Phase.PRECOPY) {
            extra.append(String.format("  downtime if paused now %d ms", VmProtos.toJava(p.getExpectedDowntime()).toMillis()));
        }
        if (p.getCpuThrottlePercent() > 0) {
            extra.append(String.format("  guest throttled %d %%", p.getCpuThrottlePercent()));
        }
        if (p.getPostcopyPageFaults() > 0) {
            extra.append(String.format("  %d faults", p.getPostcopyPageFaults()));
            if (p.getPostcopyFaultLatencyP50Micros() > 0) { // the destination's view
                extra.append(String.format(" (p50 %d µs, p99 %d µs)", p.getPostcopyFaultLatencyP50Micros(),
                        p.getPostcopyFaultLatencyP99Micros()));
            }
        }
        bar.setExtraMessage(extra.toString());
    }

    /** "demo" and "migrations/demo" both name migration demo. */
    static String name(String idOrName) {
        return idOrName.startsWith("migrations/") ? idOrName : "migrations/" + idOrName;
    }

    @Command(name = "create", mixinStandardHelpOptions = true, description = "Start migrating a VM to another agent.")
    static final class Create implements Callable<Integer> {
        @Mixin
        Target target;

        @Option(names = "--vm", required = true, description = "The VM on the source agent, vms/ID or ID.")
        String vm;

        @Option(names = "--to", required = true, description = "Control-plane address of the destination agent, HOST:PORT.")
        String to;

        @Option(names = "--id", defaultValue = "", description = "Migration ID (default: the agent picks one).")
        String id;

        @Option(names = "--mode", defaultValue = "precopy", description = "precopy, postcopy, hybrid or auto (default ${DEFAULT-VALUE}).")
        MigrationMode mode;

        @Option(names = "--max-downtime", description = "Most the guest may be paused at switchover, e.g. 50ms (default: the agent's).")
        String maxDowntime;

        @Option(names = "--bandwidth", defaultValue = "0", description = "Page bandwidth limit per second, e.g. 200m (0 = unlimited).")
        ByteSize bandwidth;

        @Option(names = "--streams", defaultValue = "0", description = "Parallel page streams (0 = the agent's default).")
        int streams;

        @Option(names = "--watch", description = "Follow the migration until it ends; exit 0 only if it completed.")
        boolean watch;

        @Option(names = "--auto-converge", description = "Throttle the guest's vCPUs while it dirties memory faster"
                + " than precopy sends it (policy.auto_converge, the agent's default percentages).")
        boolean autoConverge;

        @Option(names = "--compression", defaultValue = "auto", converter = CompressionFlag.class,
                description = CompressionFlag.DESCRIPTION)
        MigrationPolicy.PageCompression compression;

        @Override
        public Integer call() throws Exception {
            MigrationPolicy.Builder policy = MigrationPolicy.newBuilder()
                    .setBandwidthLimitBytesPerSecond(bandwidth.bytes()).setDataStreams(streams)
                    .setPageCompression(compression);
            if (autoConverge) {
                policy.setAutoConverge(dev.ferry.v1.AutoConverge.newBuilder().setEnabled(true));
            }
            if (maxDowntime != null) {
                policy.setMaxDowntime(VmProtos.duration(Durations.parse(maxDowntime).toNanos()));
            }
            Migration created = target.call(s -> s.withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS)
                    .createMigration(CreateMigrationRequest.newBuilder().setMigrationId(id).setMigration(Migration
                            .newBuilder().setVm(vm.startsWith("vms/") ? vm : "vms/" + vm).setDestinationAddress(to)
                            .setMode(mode).setPolicy(policy)).build()));
            if (watch) {
                return target.watch(created.getName());
            }
            target.print(created);
            return 0;
        }
    }

    /** A subcommand that acts on one migration, named on the command line, and prints what the agent answers. */
    abstract static class OnOne implements Callable<Integer> {
        @Mixin
        Target target;

        @Parameters(index = "0", paramLabel = "NAME", description = "migrations/ID or ID.")
        String name;

        abstract Migration call(MigrationServiceGrpc.MigrationServiceBlockingStub agent, String name);

        @Override
        public Integer call() throws Exception {
            target.print(target.call(s -> call(s.withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS), name(name))));
            return 0;
        }
    }

    @Command(name = "get", mixinStandardHelpOptions = true, description = "Show one migration.")
    static final class Get extends OnOne {
        @Override
        Migration call(MigrationServiceGrpc.MigrationServiceBlockingStub agent, String name) {
            return agent.getMigration(GetMigrationRequest.newBuilder().setName(name).build());
        }
    }

    @Command(name = "list", mixinStandardHelpOptions = true, description = "Show the agent's migrations, outgoing and incoming.")
    static final class ListAll implements Callable<Integer> {
        @Mixin
        Target target;

        @Override
        public Integer call() throws Exception {
            String page = "";
            do {
                String token = page;
                var resp = target.call(s -> s.withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS)
                        .listMigrations(ListMigrationsRequest.newBuilder().setPageToken(token).build()));
                for (Migration m : resp.getMigrationsList()) {
                    target.print(m);
                }
                page = resp.getNextPageToken();
            } while (!page.isEmpty());
            return 0;
        }
    }

    @Command(name = "watch", mixinStandardHelpOptions = true,
            description = "Follow a migration until it ends; exit 0 only if it completed.")
    static final class Watch implements Callable<Integer> {
        @Mixin
        Target target;

        @Parameters(paramLabel = "NAME", description = "migrations/ID or ID.")
        String name;

        @Override
        public Integer call() throws Exception {
            return target.watch(name(name));
        }
    }

    @Command(name = "switch-to-postcopy", mixinStandardHelpOptions = true,
            description = "Make a hybrid migration still in precopy switch to postcopy now.")
    static final class SwitchToPostcopy extends OnOne {
        @Override
        Migration call(MigrationServiceGrpc.MigrationServiceBlockingStub agent, String name) {
            return agent.switchToPostcopy(SwitchToPostcopyRequest.newBuilder().setName(name).build());
        }
    }

    @Command(name = "resume", mixinStandardHelpOptions = true,
            description = "Resume a postcopy migration paused by a cut link (POSTCOPY_PAUSED).")
    static final class Resume extends OnOne {
        @Option(names = "--destination-address", defaultValue = "",
                description = "The destination agent's control address, if it moved (HOST:PORT).")
        String destination;

        @Override
        Migration call(MigrationServiceGrpc.MigrationServiceBlockingStub agent, String name) {
            return agent.resumeMigration(ResumeMigrationRequest.newBuilder().setName(name)
                    .setDestinationAddress(destination).build());
        }
    }

    @Command(name = "set-bandwidth", mixinStandardHelpOptions = true,
            description = "Change a running migration's data-plane cap at once, e.g. 200m (bytes/s) or unlimited.")
    static final class SetBandwidth extends OnOne {
        @Parameters(index = "1", paramLabel = "RATE", description = "Bytes per second (k, m, g suffixes) or unlimited.")
        Rate rate;

        @Override
        Migration call(MigrationServiceGrpc.MigrationServiceBlockingStub agent, String name) {
            Migration.Builder m = Migration.newBuilder().setName(name);
            m.getPolicyBuilder().setBandwidthLimitBytesPerSecond(rate.unlimited() ? 0 : rate.bytesPerSecond());
            return agent.updateMigration(dev.ferry.v1.UpdateMigrationRequest.newBuilder().setMigration(m)
                    .setUpdateMask(com.google.protobuf.FieldMask.newBuilder()
                            .addPaths("policy.bandwidth_limit_bytes_per_second")).build());
        }
    }

    @Command(name = "limits", mixinStandardHelpOptions = true,
            description = "Show the agent's limits on concurrent migrations and how many are running or queued.")
    static final class Limits implements Callable<Integer> {
        @Mixin
        Target target;

        @Override
        public Integer call() throws Exception {
            MigrationLimits l = target.call(s -> s.withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS)
                    .getMigrationLimits(GetMigrationLimitsRequest.getDefaultInstance()));
            if (target.json) {
                System.out.println(JsonFormat.printer().omittingInsignificantWhitespace().print(l));
            } else {
                System.out.printf("outgoing %d of %d running, %d queued; incoming %d of %d; when busy: %s%n",
                        l.getActiveOutgoingMigrations(), l.getMaxOutgoingMigrations(), l.getQueuedOutgoingMigrations(),
                        l.getActiveIncomingMigrations(), l.getMaxIncomingMigrations(),
                        l.getWhenBusy().name().toLowerCase(java.util.Locale.ROOT));
            }
            return 0;
        }
    }

    @Command(name = "cancel", mixinStandardHelpOptions = true,
            description = "Cancel a migration; the VM stays on the source (refused once the destination runs it).")
    static final class Cancel extends OnOne {
        @Override
        Migration call(MigrationServiceGrpc.MigrationServiceBlockingStub agent, String name) {
            return agent.cancelMigration(CancelMigrationRequest.newBuilder().setName(name).build());
        }
    }
}
