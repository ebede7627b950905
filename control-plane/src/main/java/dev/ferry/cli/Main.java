package dev.ferry.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** Entry point of the {@code ferry} command. */
@Command(name = "ferry", mixinStandardHelpOptions = true, version = "ferry 0.1.0",
        description = "Live migration of KVM virtual machines.",
        subcommands = {DemoCommand.class, SoakCommand.class, BenchCommand.class, AgentCommand.class, MigrationCommand.class, VmCommand.class,
                StateCommand.class, CertsCommand.class, HealthCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    /** --mode: precopy, postcopy, hybrid or auto, in any case. */
    static dev.ferry.v1.MigrationMode mode(String s) {
        return switch (s.toLowerCase(java.util.Locale.ROOT)) {
            case "precopy" -> dev.ferry.v1.MigrationMode.PRECOPY;
            case "postcopy" -> dev.ferry.v1.MigrationMode.POSTCOPY;
            case "hybrid" -> dev.ferry.v1.MigrationMode.HYBRID;
            case "auto" -> dev.ferry.v1.MigrationMode.AUTO;
            default -> throw new IllegalArgumentException("--mode must be precopy, postcopy, hybrid or auto, not " + s);
        };
    }

    /**
     * A status's description, with the root cause's message when gRPC's own is generic: an unreachable agent is
     * "io exception" to gRPC, and "... Connection refused: /127.0.0.1:7001" to the user.
     */
    static String describe(io.grpc.Status status) {
        String d = status.getDescription();
        Throwable cause = status.getCause(); // Netty's names the address; the ones below it do not
        if (cause == null || cause.getMessage() == null || (d != null && d.contains(cause.getMessage()))) {
            return d;
        }
        return (d == null ? "" : d + ": ") + cause.getMessage();
    }

    /**
     * Netty's OpenSSL probe logs an INFO line about TLS 1.3 cipher configuration at every start of every process:
     * noise on a terminal. Held here, since java.util.logging keeps loggers weakly and would forget the level.
     */
    private static final java.util.logging.Logger OPENSSL_PROBE =
            java.util.logging.Logger.getLogger("io.grpc.netty.shaded.io.netty.handler.ssl"); // the SSL contexts' loggers

    public static void main(String[] args) {
        OPENSSL_PROBE.setLevel(java.util.logging.Level.WARNING);
        System.exit(execute(new java.io.PrintWriter(System.err, true), args));
    }

    /** Runs the command line, with {@code ferry agent --config FILE}'s options added (see {@link AgentConfigFile}). */
    static int execute(java.io.PrintWriter err, String... args) {
        String[] expanded;
        try {
            expanded = AgentConfigFile.expand(args);
        } catch (java.io.IOException e) {
            err.println("ferry: " + e.getMessage());
            return 2;
        }
        return commandLine().setErr(err).execute(expanded);
    }

    static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new Main());
        cl.registerConverter(ByteSize.class, ByteSize::parse);
        cl.registerConverter(Rate.class, Rate::parse);
        cl.registerConverter(dev.ferry.v1.MigrationMode.class, Main::mode);
        cl.setExecutionExceptionHandler((e, cmd, parsed) -> {
            // Bad input and refused operations get one clear line; anything else keeps its trace.
            if (e instanceof IllegalArgumentException || e instanceof IllegalStateException
                    || e instanceof dev.ferry.state.StateException || e instanceof java.io.IOException
                    || e instanceof dev.ferry.backends.BackendUnavailableException
                    || e instanceof dev.ferry.vm.VmFailure || e instanceof dev.ferry.linux.NativeException
                    || e instanceof dev.ferry.vm.IncompatibleShapeException) {
                cmd.getErr().println("ferry: " + e.getMessage());
                return 2;
            }
            if (e instanceof io.grpc.StatusRuntimeException s) { // an agent refused: its status says why
                cmd.getErr().println("ferry: " + s.getStatus().getCode() + ": " + describe(s.getStatus()));
                return 2;
            }
            throw e;
        });
        return cl;
    }
}
