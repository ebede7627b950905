package dev.ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.grpc.Status;
import java.net.ConnectException;
import org.junit.jupiter.api.Test;

/** What the CLI prints for a failed call: gRPC's generic words, then what actually went wrong. */
class CliErrorsTest {
    @Test
    void anUnreachableAgentIsNamed() {
        Status s = Status.UNAVAILABLE.withDescription("io exception")
                .withCause(new ConnectException("Connection refused: /127.0.0.1:7001"));
        assertEquals("io exception: Connection refused: /127.0.0.1:7001", Main.describe(s));
    }

    @Test
    void anAgentsOwnDescriptionStandsAlone() {
        assertEquals("vms/web not found", Main.describe(Status.NOT_FOUND.withDescription("vms/web not found")));
        Status repeated = Status.UNAVAILABLE.withDescription("Connection refused: x").withCause(new ConnectException("Connection refused: x"));
        assertEquals("Connection refused: x", Main.describe(repeated));
    }
}
