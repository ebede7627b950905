package dev.ferry.control.agent;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.backends.Backends;
import dev.ferry.control.migration.MigrationServices;
import dev.ferry.security.CertificateAuthority;
import dev.ferry.security.MethodRoles;
import dev.ferry.security.TlsFiles;
import dev.ferry.security.TransportSecurity;
import dev.ferry.v1.FerryMetadata;
import dev.ferry.v1.ListVmsRequest;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.NegotiateMigrationRequest;
import dev.ferry.v1.TransferDeviceStateRequest;
import dev.ferry.v1.VmServiceGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** One agent in this JVM over mutual TLS: the role table covers everything it serves, and is enforced. */
class AgentAuthorizationTest {
    @TempDir
    static Path certs;
    static Agent agent;
    static final List<ManagedChannel> channels = new ArrayList<>();

    @BeforeAll
    static void start() throws Exception {
        CertificateAuthority.init(certs, List.of(), List.of());
        InetSocketAddress any = new InetSocketAddress("127.0.0.1", 0);
        agent = Agent.start("authz", TransportSecurity.mutualTls(TlsFiles.in(certs, "agent")), any, any, line -> { },
                Backends.open(Backends.Choice.PROCESS), MigrationServices::new);
    }

    @AfterAll
    static void stop() {
        channels.forEach(ManagedChannel::shutdownNow);
        if (agent != null) {
            agent.close();
        }
    }

    private static ManagedChannel as(String party) throws Exception {
        ManagedChannel c = TransportSecurity.mutualTls(TlsFiles.in(certs, party)).channelBuilder(agent.controlAddress()).build();
        channels.add(c);
        return c;
    }

    @Test
    void everyMethodOfEveryServiceOnEveryListenerIsInTheTable() {
        List<String> served = new ArrayList<>();
        for (ServerServiceDefinition s : agent.servedServices()) {
            for (ServerMethodDefinition<?, ?> m : s.getMethods()) {
                served.add(m.getMethodDescriptor().getFullMethodName());
            }
        }
        assertTrue(served.contains("ferry.v1.PostcopyPagerService/StreamPageFaults"), served.toString());
        assertTrue(served.contains("ferry.v1.PageTransferService/StreamPages"), served.toString());
        for (String m : served) {
            assertTrue(MethodRoles.ferry().rolesFor(m).isPresent(), m + " is served but missing from MethodRoles");
        }
    }

    @Test
    void aControllerCannotNegotiateAndNothingIsAllocated() throws Exception {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> MigrationServiceGrpc
                .newBlockingStub(as("controller")).withDeadlineAfter(10, TimeUnit.SECONDS)
                .negotiateMigration(NegotiateMigrationRequest.newBuilder().setMigration("migrations/probe")
                        .setSourceVm("vms/probe").build()));
        assertEquals(Status.Code.PERMISSION_DENIED, e.getStatus().getCode());
        assertTrue(agent.vms().list().isEmpty());
        assertEquals(0, VmServiceGrpc.newBlockingStub(as("controller")).listVms(ListVmsRequest.getDefaultInstance())
                .getVmsCount());
    }

    @Test
    void anAgentCannotCallThePublicMethods() throws Exception {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> VmServiceGrpc
                .newBlockingStub(as("agent")).withDeadlineAfter(10, TimeUnit.SECONDS)
                .listVms(ListVmsRequest.getDefaultInstance()));
        assertEquals(Status.Code.PERMISSION_DENIED, e.getStatus().getCode());
    }

    @Test
    void anUnknownMigrationAndAWrongTokenGetTheSameAnswer() throws Exception {
        List<Status> answers = new ArrayList<>();
        for (String token : new String[] {null, "", "guess"}) {
            var stub = MigrationServiceGrpc.newBlockingStub(as("agent")).withDeadlineAfter(10, TimeUnit.SECONDS);
            if (token != null) {
                Metadata md = new Metadata();
                md.put(FerryMetadata.SESSION_TOKEN, token);
                stub = stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(md));
            }
            var s = stub;
            answers.add(assertThrows(StatusRuntimeException.class, () -> s.transferDeviceState(
                    TransferDeviceStateRequest.newBuilder().setMigration("migrations/ghost" + answers.size())
                            .setState(com.google.protobuf.ByteString.copyFromUtf8("state")).build())).getStatus());
        }
        for (Status st : answers) {
            assertEquals(Status.Code.UNAUTHENTICATED, st.getCode());
            assertEquals("session token does not match", st.getDescription());
            assertFalse(st.getDescription().contains("ghost"));
        }
    }
}
