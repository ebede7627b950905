package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.BackendTestSupport;
import dev.ferry.backends.Backends;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.agent.AgentServices;
import dev.ferry.security.CertificateAuthority;
import dev.ferry.security.TlsFiles;
import dev.ferry.security.TransportSecurity;
import dev.ferry.v1.CheckVmMemoryRequest;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.GetMigrationRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.IncompatibilityDetails;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.MigrationStatistics;
import dev.ferry.v1.NegotiateMigrationRequest;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WatchMigrationRequest;
import dev.ferry.v1.WorkloadSpec;
import dev.ferry.vm.Backend;
import io.grpc.ForwardingServerCallListener;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.net.InetSocketAddress;
import java.util.Iterator;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The protocol version window, with two agents in this JVM: an agent speaking the previous version migrates to and
 * from the current one without the verification round version 1 lacks; a version outside the window is refused at
 * negotiation, and the guest stays on the source.
 */
class ProtocolVersionTest {
    @TempDir
    static java.nio.file.Path certs;

    @BeforeAll
    static void certificates() throws Exception {
        CertificateAuthority.init(certs, List.of(), List.of());
    }

    private static AgentServices.Factory speaking(int version) {
        return a -> new MigrationServices(a, io.opentelemetry.api.OpenTelemetry.noop(), FaultInjection.NONE, version);
    }

    private static Agent agent(String name, Backend backend, AgentServices.Factory services) throws Exception {
        InetSocketAddress any = new InetSocketAddress("127.0.0.1", 0);
        return Agent.start(name, TransportSecurity.mutualTls(TlsFiles.in(certs, "agent")), any, any, line -> { },
                Backends.open(Backends.Choice.valueOf(backend.name())), services);
    }

    private static ManagedChannel controller(String address) throws Exception {
        return TransportSecurity.mutualTls(TlsFiles.in(certs, "controller")).channelBuilder(address).build();
    }

    private static String createVm(ManagedChannel ch) {
        return VmServiceGrpc.newBlockingStub(ch).createVm(CreateVmRequest.newBuilder().setVmId("pv").setVm(Vm.newBuilder()
                .setVcpuCount(1).setMemoryBytes(64 << 20).setWorkload(WorkloadSpec.newBuilder()
                        .setWorkingSetBytes(16 << 20).setDirtyRateBytesPerSecond(4 << 20))).build()).getName();
    }

    private static Migration migrate(ManagedChannel src, String vm, String to) {
        var stub = MigrationServiceGrpc.newBlockingStub(src);
        Migration m = stub.createMigration(CreateMigrationRequest.newBuilder().setMigrationId("pv")
                .setMigration(Migration.newBuilder().setVm(vm).setDestinationAddress(to)).build());
        Iterator<Migration> it = stub.watchMigration(WatchMigrationRequest.newBuilder().setName(m.getName()).build());
        while (it.hasNext()) {
            it.next();
        }
        return stub.getMigration(GetMigrationRequest.newBuilder().setName(m.getName()).build());
    }

    private static void assertRunsIntact(ManagedChannel ch, String vm) {
        var vms = VmServiceGrpc.newBlockingStub(ch);
        assertEquals(Vm.State.RUNNING, vms.getVm(GetVmRequest.newBuilder().setName(vm).build()).getState());
        assertEquals(0, vms.checkVmMemory(CheckVmMemoryRequest.newBuilder().setName(vm).build()).getWrongPages());
    }

    /** Source version, destination version: either side may be the older one. */
    enum Pair {
        OLD_SOURCE(1, 2), OLD_DESTINATION(2, 1);

        final int source;
        final int destination;

        Pair(int source, int destination) {
            this.source = source;
            this.destination = destination;
        }
    }

    @ParameterizedTest(name = "{0}")
    @EnumSource(Pair.class)
    void aVersionOneAgentMigratesWithTheDigestCheckedBeforeTheResumeOnly(Pair pair) throws Exception {
        Backend backend = Backend.PROCESS;
        BackendTestSupport.assume(backend);
        try (Agent src = agent("pv-src", backend, speaking(pair.source));
                Agent dst = agent("pv-dst", backend, speaking(pair.destination))) {
            ManagedChannel s = controller(src.controlAddress());
            ManagedChannel d = controller(dst.controlAddress());
            try {
                Migration end = migrate(s, createVm(s), dst.controlAddress());
                assertEquals(Migration.Phase.COMPLETED, end.getPhase(), end.getError().getMessage());
                assertEquals(MigrationStatistics.VerificationMethod.DIGEST_BEFORE_RESUME,
                        end.getStatistics().getVerificationMethod(), "version 1 has no verification after the resume");
                assertTrue(end.getStatistics().getMemoryVerified(), "the destination compared the digest");
                assertEquals(0, end.getStatistics().getPagesCompared());
                assertRunsIntact(d, end.getDestinationVm());
            } finally {
                s.shutdownNow();
                d.shutdownNow();
            }
        }
    }

    @Test
    void twoCurrentAgentsStillVerifyAfterTheResume() throws Exception {
        Backend backend = Backend.PROCESS;
        BackendTestSupport.assume(backend);
        try (Agent src = agent("pv-src", backend, speaking(ProtocolVersion.CURRENT));
                Agent dst = agent("pv-dst", backend, speaking(ProtocolVersion.CURRENT))) {
            ManagedChannel s = controller(src.controlAddress());
            try {
                Migration end = migrate(s, createVm(s), dst.controlAddress());
                assertEquals(Migration.Phase.COMPLETED, end.getPhase(), end.getError().getMessage());
                assertEquals(MigrationStatistics.VerificationMethod.UNWRITTEN_PAGES_AFTER_RESUME,
                        end.getStatistics().getVerificationMethod());
            } finally {
                s.shutdownNow();
            }
        }
    }

    /** Rewrites the protocol_version of every NegotiateMigration the destination receives. */
    private static AgentServices.Factory receivingVersion(int version) {
        ServerInterceptor rewrite = new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                    ServerCallHandler<Q, R> next) {
                return new ForwardingServerCallListener.SimpleForwardingServerCallListener<>(next.startCall(call, headers)) {
                    @Override
                    @SuppressWarnings("unchecked")
                    public void onMessage(Q message) {
                        super.onMessage(message instanceof NegotiateMigrationRequest r
                                ? (Q) r.toBuilder().setProtocolVersion(version).build() : message);
                    }
                };
            }
        };
        return InterceptedServices.control(rewrite);
    }

    @ParameterizedTest(name = "explicit version {0}")
    @org.junit.jupiter.params.provider.ValueSource(ints = {0, 4})
    void aVersionOutsideTheWindowIsRefusedAtNegotiation(int version) throws Exception {
        Backend backend = Backend.PROCESS;
        BackendTestSupport.assume(backend);
        try (Agent src = agent("pv-src", backend, MigrationServices::new);
                Agent dst = agent("pv-dst", backend, receivingVersion(version))) {
            ManagedChannel s = controller(src.controlAddress());
            try {
                String vm = createVm(s);
                StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
                        () -> migrate(s, vm, dst.controlAddress()));
                assertEquals(Status.Code.FAILED_PRECONDITION, e.getStatus().getCode(), e.getStatus().toString());
                String why = e.getStatus().getDescription();
                assertTrue(why.contains("protocol_version (source " + version + ", destination 2)"), why);
                var details = StatusProto.fromThrowable(e).getDetailsList().stream()
                        .filter(a -> a.is(IncompatibilityDetails.class)).findFirst().orElseThrow()
                        .unpack(IncompatibilityDetails.class);
                assertEquals("protocol_version", details.getMismatches(0).getField());
                assertEquals(String.valueOf(version), details.getMismatches(0).getSourceValue());
                assertEquals("2", details.getMismatches(0).getDestinationValue());
                assertRunsIntact(s, vm);
                assertTrue(dst.vms().list().isEmpty(), "nothing was created on the destination");
            } finally {
                s.shutdownNow();
            }
        }
    }

    @Test
    void theWindowIsThisVersionAndTheOneBefore() {
        assertEquals(1, ProtocolVersion.ofWire(false, 0), "an absent field is a version-1 peer");
        assertTrue(ProtocolVersion.refusal(2, 1).isEmpty());
        assertTrue(ProtocolVersion.refusal(2, 2).isEmpty());
        assertTrue(ProtocolVersion.refusal(1, 2).isEmpty(), "a version-2 peer speaks 1 too");
        assertTrue(ProtocolVersion.refusal(2, 3).isEmpty(), "a version-3 peer will speak 2 too");
        assertTrue(ProtocolVersion.refusal(2, 4).isPresent());
        assertTrue(ProtocolVersion.refusal(1, 3).isPresent());
        assertTrue(ProtocolVersion.refusal(2, 0).isPresent());
        assertThrows(IllegalArgumentException.class, () -> ProtocolVersion.requireSpeakable(3));
    }
}
