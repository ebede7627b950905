package dev.ferry.control.edge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.ferry.backends.Backends;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.migration.MigrationServices;
import dev.ferry.control.vm.GuestAdmission;
import dev.ferry.security.TransportSecurity;
import dev.ferry.v1.ListVmsRequest;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.VmServiceGrpc;
import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.KnownLength;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;

/**
 * Coverage-guided fuzzing of every control-plane RPC (VmService, MigrationService with its incoming-migration
 * calls) through the agent's real edge: an in-process agent built as {@link BadInputTest} builds it, so each request
 * passes the EdgeGuard/MessageGate, the validators and the service implementation (docs/fuzzing.md).
 *
 * <p>Input layout: the first byte picks the method (modulo the method count, in the order of their full names);
 * the rest is the request message, sent as raw bytes. Properties: every call ends with a status
 * of {@link #ALLOWED} (never UNKNOWN or INTERNAL, which would mean an exception got through; UNAVAILABLE only from
 * the {@link #DIALING} RPCs), within the deadline;
 * and the agent answers a ListVms afterwards. Admission keeps what the fuzzer can allocate tiny: at most
 * {@link #MAX_VMS} VMs and {@link #MAX_GUEST_MEMORY} bytes of guest memory in all. Seeds: {@link ControlFuzzSeedsTest}.
 */
class ControlRpcFuzzTest {
    static final int MAX_VMS = 2;
    static final long MAX_GUEST_MEMORY = 64L << 20;
    /** The codes the API documents for a request it refuses, and OK. */
    static final Set<Status.Code> ALLOWED = Set.of(Status.Code.OK, Status.Code.INVALID_ARGUMENT, Status.Code.NOT_FOUND,
            Status.Code.FAILED_PRECONDITION, Status.Code.UNAUTHENTICATED, Status.Code.PERMISSION_DENIED,
            Status.Code.RESOURCE_EXHAUSTED, Status.Code.ALREADY_EXISTS, Status.Code.DATA_LOSS, Status.Code.OUT_OF_RANGE,
            Status.Code.UNIMPLEMENTED);
    /**
     * The RPCs that dial another agent also answer UNAVAILABLE or DEADLINE_EXCEEDED when it cannot be reached
     * (migration_service.proto), which a fuzzed address mostly cannot.
     */
    static final Set<String> DIALING = Set.of(MigrationServiceGrpc.getCreateMigrationMethod().getFullMethodName(),
            MigrationServiceGrpc.getResumeMigrationMethod().getFullMethodName(),
            MigrationServiceGrpc.getResumeIncomingMigrationMethod().getFullMethodName());
    static final Set<Status.Code> UNREACHABLE = Set.of(Status.Code.UNAVAILABLE, Status.Code.DEADLINE_EXCEEDED);
    /** Every method of the two control services, request and response as raw bytes. */
    static final List<MethodDescriptor<byte[], byte[]>> METHODS = methods();

    private static Agent agent;
    private static ManagedChannel channel;

    private static synchronized ManagedChannel channel() throws IOException {
        if (agent == null) {
            String n = InProcessServerBuilder.generateName();
            agent = Agent.start("fuzz", TransportSecurity.insecure(), InProcessServerBuilder.forName(n),
                    InProcessServerBuilder.forName(n + "-data"), InProcessServerBuilder.forName(n + "-pager"), null,
                    line -> { }, Backends.open(Backends.Choice.AUTO), MigrationServices::new,
                    new GuestAdmission.Limits(MAX_VMS, MAX_GUEST_MEMORY));
            channel = InProcessChannelBuilder.forName(n).build();
        }
        return channel;
    }

    @AfterAll
    static synchronized void stop() {
        if (agent != null) {
            channel.shutdownNow();
            agent.close();
            agent = null;
        }
    }

    @FuzzTest(maxDuration = "15s")
    void everyCallEndsWithADocumentedStatus(byte[] input) throws Exception {
        if (input.length == 0) {
            return;
        }
        MethodDescriptor<byte[], byte[]> method = METHODS.get((input[0] & 0xff) % METHODS.size());
        byte[] request = Arrays.copyOfRange(input, 1, input.length);
        Status status = call(channel(), method, request);
        assertTrue(ALLOWED.contains(status.getCode()) || DIALING.contains(method.getFullMethodName())
                && UNREACHABLE.contains(status.getCode()), method.getFullMethodName() + " ended with " + status);
        Status alive = call(channel(), METHODS.get(indexOf(VmServiceGrpc.getListVmsMethod())),
                ListVmsRequest.getDefaultInstance().toByteArray());
        assertEquals(Status.Code.OK, alive.getCode(), "the agent stopped answering: " + alive);
    }

    /**
     * Calls {@code method} with {@code request}; its final status. A server-streaming call (WatchMigration) is
     * cancelled at its first message, which counts as OK: a watch is never cut by the server.
     */
    static Status call(ManagedChannel channel, MethodDescriptor<byte[], byte[]> method, byte[] request)
            throws Exception {
        ClientCall<byte[], byte[]> call = channel.newCall(method, CallOptions.DEFAULT.withDeadlineAfter(60,
                TimeUnit.SECONDS));
        CompletableFuture<Status> done = new CompletableFuture<>();
        call.start(new ClientCall.Listener<>() {
            @Override
            public void onMessage(byte[] message) {
                if (method.getType() == MethodDescriptor.MethodType.SERVER_STREAMING) {
                    done.complete(Status.OK);
                    call.cancel("fuzz test: first message received", null);
                }
            }

            @Override
            public void onClose(Status status, Metadata trailers) {
                done.complete(status);
            }
        }, new Metadata());
        call.request(1);
        call.sendMessage(request);
        call.halfClose();
        return done.get(90, TimeUnit.SECONDS);
    }

    static int indexOf(MethodDescriptor<?, ?> m) {
        for (int i = 0; i < METHODS.size(); i++) {
            if (METHODS.get(i).getFullMethodName().equals(m.getFullMethodName())) {
                return i;
            }
        }
        throw new IllegalArgumentException("not a control method: " + m.getFullMethodName());
    }

    private static List<MethodDescriptor<byte[], byte[]>> methods() {
        MethodDescriptor.Marshaller<byte[]> raw = new MethodDescriptor.Marshaller<>() {
            @Override
            public InputStream stream(byte[] value) {
                return new Known(value);
            }

            @Override
            public byte[] parse(InputStream in) {
                try {
                    return in.readAllBytes();
                } catch (IOException e) {
                    throw Status.INTERNAL.withDescription("reading a raw message failed").withCause(e)
                            .asRuntimeException();
                }
            }
        };
        List<MethodDescriptor<byte[], byte[]>> out = new ArrayList<>();
        for (var service : List.of(VmServiceGrpc.getServiceDescriptor(), MigrationServiceGrpc.getServiceDescriptor())) {
            for (MethodDescriptor<?, ?> m : service.getMethods()) {
                out.add(m.toBuilder(raw, raw).build());
            }
        }
        out.sort(Comparator.comparing(MethodDescriptor::getFullMethodName)); // stable, whatever the descriptor's order
        return List.copyOf(out);
    }

    /** A stream that knows its length, as the Netty transport's does (the in-process one passes ours as it is). */
    private static final class Known extends ByteArrayInputStream implements KnownLength {
        Known(byte[] b) {
            super(b);
        }
    }
}
