package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.agent.AgentServices;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.vm.Backend;
import io.grpc.ForwardingServerCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import dev.ferry.security.CertificateAuthority;
import dev.ferry.security.TlsFiles;
import dev.ferry.security.TransportSecurity;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The switchover's failure paths, with two agents in this JVM on any backend: an answer lost after the
 * destination resumed the guest is asked for again and the migration completes; a switchover the
 * destination refuses gives the guest back to the source, running and intact.
 */
class SwitchoverTest {
    private static final String COMPLETE = MigrationServiceGrpc.getCompleteIncomingMigrationMethod().getFullMethodName();
    @TempDir
    static java.nio.file.Path certs;

    @BeforeAll
    static void certificates() throws Exception {
        CertificateAuthority.init(certs, List.of(), List.of());
    }

    /** A channel to {@code address} as a controller, over mutual TLS. */
    private static ManagedChannel controller(String address) throws Exception {
        return TransportSecurity.mutualTls(TlsFiles.in(certs, "controller")).channelBuilder(address).build();
    }

    /** The destination's migration service, with its CompleteIncomingMigration answers tampered with. */
    private static AgentServices.Factory destination(ServerInterceptor tamper) {
        return InterceptedServices.control(tamper);
    }

    /** Runs the call, then replaces the first {@code lost} answers to CompleteIncomingMigration with UNAVAILABLE. */
    private static ServerInterceptor loseAnswers(AtomicInteger calls, int lost) {
        return new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                    ServerCallHandler<Q, R> next) {
                if (!call.getMethodDescriptor().getFullMethodName().equals(COMPLETE) || calls.incrementAndGet() > lost) {
                    return next.startCall(call, headers);
                }
                return next.startCall(new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
                    @Override
                    public void sendMessage(R message) {
                        // the destination did its work; its answer never reaches the source
                    }

                    @Override
                    public void close(Status status, Metadata trailers) {
                        super.close(status.isOk() ? Status.UNAVAILABLE.withDescription("answer lost in transit")
                                : status, trailers);
                    }
                }, headers);
            }
        };
    }

    /** Refuses every CompleteIncomingMigration before the destination does anything. */
    private static ServerInterceptor refuseSwitchover(AtomicInteger calls) {
        return new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                    ServerCallHandler<Q, R> next) {
                if (!call.getMethodDescriptor().getFullMethodName().equals(COMPLETE)) {
                    return next.startCall(call, headers);
                }
                calls.incrementAndGet();
                call.close(Status.FAILED_PRECONDITION.withDescription("destination refuses to resume"), new Metadata());
                return new ServerCall.Listener<>() { };
            }
        };
    }


    @ParameterizedTest(name = "on {0}")
    @EnumSource(Backend.class)
    void aLostSwitchoverAnswerIsAskedForAgainAndTheMigrationCompletes(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        AtomicInteger calls = new AtomicInteger();
        try (Agent src = InProcessAgents.start("sw-src", backend, MigrationServices::new, certs);
                Agent dst = InProcessAgents.start("sw-dst", backend, destination(loseAnswers(calls, 1)), certs)) {
            ManagedChannel s = controller(src.controlAddress());
            ManagedChannel d = controller(dst.controlAddress());
            try {
                String vm = InProcessAgents.createVm(s, "sw", 16 << 20);
                Migration end = InProcessAgents.migrate(s, "sw", vm, dst.controlAddress());
                assertEquals(Migration.Phase.COMPLETED, end.getPhase(), end.getError().getMessage());
                assertEquals(2, calls.get(), "the source asked again after the lost answer");
                assertTrue(end.getStatistics().getMemoryVerified());
                // Where the downtime went: every step of a precopy switchover was timed.
                var steps = end.getStatistics().getDowntimeBreakdown();
                assertTrue(end.getStatistics().hasDowntimeBreakdown());
                for (var step : java.util.List.of(steps.getPause(), steps.getDeviceStateSave(),
                        steps.getDeviceStateTransfer(), steps.getDestinationResume())) {
                    assertTrue(step.getSeconds() > 0 || step.getNanos() > 0, steps.toString());
                }
                InProcessAgents.assertRunsIntact(d, end.getDestinationVm());
                assertTrue(src.vms().list().isEmpty(), "the source released the VM");
            } finally {
                s.shutdownNow();
                d.shutdownNow();
            }
        }
    }

    @ParameterizedTest(name = "on {0}")
    @EnumSource(Backend.class)
    void aRefusedSwitchoverGivesTheGuestBackToTheSource(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        AtomicInteger calls = new AtomicInteger();
        try (Agent src = InProcessAgents.start("sw-src", backend, MigrationServices::new, certs);
                Agent dst = InProcessAgents.start("sw-dst", backend, destination(refuseSwitchover(calls)), certs)) {
            ManagedChannel s = controller(src.controlAddress());
            try {
                String vm = InProcessAgents.createVm(s, "sw", 16 << 20);
                Migration end = InProcessAgents.migrate(s, "sw", vm, dst.controlAddress());
                assertEquals(Migration.Phase.FAILED, end.getPhase());
                assertTrue(end.getError().getMessage().contains("destination refuses to resume"), end.getError().toString());
                assertEquals(Status.Code.FAILED_PRECONDITION.value(), end.getError().getCode(), "the peer's code is kept");
                assertEquals("SWITCHOVER", end.getError().getDetails(0).unpack(com.google.rpc.ErrorInfo.class).getReason());
                assertEquals(1, calls.get(), "a refusal is not retried");
                InProcessAgents.assertRunsIntact(s, vm);
                assertTrue(dst.vms().list().isEmpty(), "the destination discarded its copy");
            } finally {
                s.shutdownNow();
            }
        }
    }

    /** Drops source_memory_digest from every CompleteIncomingMigration, as a careless or hostile source would. */
    private static ServerInterceptor stripDigest(AtomicInteger calls) {
        return new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                    ServerCallHandler<Q, R> next) {
                if (!call.getMethodDescriptor().getFullMethodName().equals(COMPLETE)) {
                    return next.startCall(call, headers);
                }
                return new io.grpc.ForwardingServerCallListener.SimpleForwardingServerCallListener<>(
                        next.startCall(call, headers)) {
                    @Override
                    @SuppressWarnings("unchecked")
                    public void onMessage(Q message) {
                        calls.incrementAndGet();
                        super.onMessage((Q) ((dev.ferry.v1.CompleteIncomingMigrationRequest) message).toBuilder()
                                .clearSourceMemoryDigest().build());
                    }
                };
            }
        };
    }

    @ParameterizedTest(name = "on {0}")
    @EnumSource(Backend.class)
    void aSwitchoverWithoutTheDigestIsRefusedAndTheGuestStaysOnTheSource(Backend backend) throws Exception {
        BackendTestSupport.assume(backend);
        AtomicInteger calls = new AtomicInteger();
        try (Agent src = InProcessAgents.start("sw-src", backend, MigrationServices::new, certs);
                Agent dst = InProcessAgents.start("sw-dst", backend, destination(stripDigest(calls)), certs)) {
            ManagedChannel s = controller(src.controlAddress());
            try {
                String vm = InProcessAgents.createVm(s, "sw", 16 << 20);
                Migration end = InProcessAgents.migrate(s, "sw", vm, dst.controlAddress());
                assertEquals(Migration.Phase.FAILED, end.getPhase());
                assertTrue(end.getError().getMessage().contains("source_memory_digest is required"), end.getError().toString());
                assertEquals(1, calls.get(), "a refusal is not retried");
                InProcessAgents.assertRunsIntact(s, vm);
                assertTrue(dst.vms().list().isEmpty(), "the destination discarded its copy");
            } finally {
                s.shutdownNow();
            }
        }
    }
}
