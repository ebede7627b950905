package dev.ferry.control.edge;

import dev.ferry.security.TransportSecurity;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.Backends;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.migration.MigrationServices;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.VmServiceGrpc;
import io.grpc.CallOptions;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCalls;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Raw bytes at a real agent's Netty control listener: malformed bodies are INVALID_ARGUMENT (not UNKNOWN) with no
 * stack trace logged and one log line for a hundred of them; an 8 MiB name is refused without being echoed.
 */
class EdgeOverNettyTest {
    private static final MethodDescriptor.Marshaller<byte[]> BYTES = dev.ferry.control.RawBytes.MARSHALLER;
    /** Field 1 (name), length-delimited, with a length varint that never ends: not a protobuf message. */
    private static final byte[] MALFORMED = {0x0a, (byte) 0xff, (byte) 0xff, (byte) 0xff};

    private static final List<LogRecord> LOGGED = new CopyOnWriteArrayList<>();
    private static final Handler CAPTURE = new Handler() {
        @Override
        public void publish(LogRecord r) {
            LOGGED.add(r);
        }

        @Override
        public void flush() {}

        @Override
        public void close() {}
    };

    private static Agent agent;
    private static ManagedChannel channel;

    @BeforeAll
    static void start() throws Exception {
        Logger.getLogger("").addHandler(CAPTURE);
        InetSocketAddress any = new InetSocketAddress("127.0.0.1", 0);
        agent = Agent.start("netty-edge", TransportSecurity.insecure(), any, any, line -> { }, Backends.open(Backends.Choice.AUTO),
                MigrationServices::new);
        channel = NettyChannelBuilder.forTarget(agent.controlAddress()).usePlaintext().build();
    }

    @AfterAll
    static void stop() {
        channel.shutdownNow();
        agent.close();
        Logger.getLogger("").removeHandler(CAPTURE);
    }

    private static <Q, R> byte[] callRaw(MethodDescriptor<Q, R> method, byte[] body) {
        MethodDescriptor<byte[], byte[]> raw = method.toBuilder(BYTES, BYTES).build();
        return ClientCalls.blockingUnaryCall(channel, raw, CallOptions.DEFAULT.withDeadlineAfter(30, TimeUnit.SECONDS),
                body);
    }

    @Test
    void aHundredMalformedBodiesAreInvalidArgumentWithOneLogLineAndNoStackTrace() {
        LOGGED.clear();
        for (int i = 0; i < 100; i++) {
            StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
                    () -> callRaw(VmServiceGrpc.getPauseVmMethod(), MALFORMED));
            assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode(), e.getStatus().toString());
            assertTrue(e.getStatus().getDescription().startsWith("request message is not a valid PauseVm request"),
                    e.getStatus().getDescription());
        }
        StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
                () -> callRaw(MigrationServiceGrpc.getCreateMigrationMethod(), MALFORMED));
        assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode(), e.getStatus().toString());
        List<LogRecord> traces = LOGGED.stream().filter(r -> r.getThrown() != null).toList();
        assertTrue(traces.isEmpty(), "no stack trace logged: " + traces.stream().map(LogRecord::getMessage).toList());
        List<String> lines = LOGGED.stream().filter(r -> r.getLevel().intValue() >= Level.INFO.intValue())
                .map(LogRecord::getMessage).filter(m -> m.contains("PauseVm")).toList();
        assertEquals(1, lines.size(), "one line for 100 like refusals within the interval: " + lines);
        assertTrue(lines.get(0).startsWith("refused ferry.v1.VmService/PauseVm INVALID_ARGUMENT"), lines.get(0));
    }

    @Test
    void anEightMebibyteNameIsRefusedWithoutBeingEchoed() {
        String name = "vms/" + "a".repeat(8 << 20);
        StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
                () -> VmServiceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS)
                        .getVm(GetVmRequest.newBuilder().setName(name).build()));
        assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
        assertTrue(e.getStatus().getDescription().length() < 200, e.getStatus().getDescription());
        assertTrue(e.getStatus().getDescription().contains("ferry.v1.VmService/GetVm"));
    }

    @Test
    void aMalformedNameJustUnderTheLimitIsQuotedAtMost128Characters() {
        String name = "vms/" + "B".repeat(60_000);
        StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
                () -> VmServiceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS)
                        .getVm(GetVmRequest.newBuilder().setName(name).build()));
        assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
        assertTrue(e.getStatus().getDescription().length() < 400, e.getStatus().getDescription());
        assertTrue(e.getStatus().getDescription().contains("(60004 characters)"), e.getStatus().getDescription());
    }
}
