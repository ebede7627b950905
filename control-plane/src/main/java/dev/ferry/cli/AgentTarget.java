package dev.ferry.cli;

import dev.ferry.control.client.ReadRetries;
import dev.ferry.security.TlsOptions;
import io.grpc.ManagedChannel;
import java.util.function.Function;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code --agent HOST:PORT --json} and the TLS flags: what every command that calls an agent takes. */
final class AgentTarget {
    @Option(names = "--agent", required = true, description = "Control-plane address of the agent, HOST:PORT.")
    String agent;

    @Option(names = "--json", description = "Print the result as JSON (the ferry.v1 message), one per line.")
    boolean json;

    @Mixin
    TlsOptions tls = new TlsOptions();

    /** Runs {@code body} over a fresh channel to the agent, closed afterwards. */
    <T> T call(Function<ManagedChannel, T> body) {
        ManagedChannel ch;
        try {
            ch = ReadRetries.apply(tls.open().channelBuilder(agent)).build();
        } catch (java.io.IOException e) {
            throw new IllegalArgumentException(e.getMessage(), e);
        }
        try {
            return body.apply(ch);
        } finally {
            ch.shutdownNow();
        }
    }
}
