package dev.ferry.security;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.PageBatch;
import dev.ferry.v1.VmServiceGrpc;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.stub.StreamObserver;
import java.math.BigInteger;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.security.cert.X509Certificate;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import javax.net.ssl.SSLSession;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Real listeners on loopback, TLS on both ends: who gets through, and that rotated files are used. */
class MutualTlsTest {
    @TempDir
    Path dir;
    private Server server;
    private final AtomicReference<X509Certificate> lastClientCert = new AtomicReference<>();
    private final java.util.List<ManagedChannel> channels = new java.util.ArrayList<>();

    @BeforeEach
    void certs() throws Exception {
        CertificateAuthority.init(dir, List.of(), List.of());
    }

    @AfterEach
    void stop() throws Exception {
        channels.forEach(ManagedChannel::shutdownNow);
        if (server != null) {
            server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }

    private String startAgent(TlsFiles files) throws Exception {
        TransportSecurity s = TransportSecurity.mutualTls(files);
        ServerInterceptor recordPeer = new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, io.grpc.Metadata h,
                    ServerCallHandler<Q, R> next) {
                SSLSession ssl = call.getAttributes().get(Grpc.TRANSPORT_ATTR_SSL_SESSION);
                try {
                    lastClientCert.set((X509Certificate) ssl.getPeerCertificates()[0]);
                } catch (javax.net.ssl.SSLPeerUnverifiedException e) {
                    throw new AssertionError(e);
                }
                return next.startCall(call, h);
            }
        };
        server = s.serverBuilder(new InetSocketAddress("127.0.0.1", 0))
                .addService(new HealthStatusManager().getHealthService())
                .addService(new VmServiceGrpc.VmServiceImplBase() {
                    @Override
                    public void getVm(GetVmRequest request, StreamObserver<dev.ferry.v1.Vm> out) {
                        out.onNext(dev.ferry.v1.Vm.newBuilder().setName(request.getName()).build());
                        out.onCompleted();
                    }
                })
                .addService(dev.ferry.v1.PageTransferServiceGrpc.bindService(
                        new dev.ferry.v1.PageTransferServiceGrpc.PageTransferServiceImplBase() { }))
                .intercept(recordPeer).intercept(s.authorization()).build().start();
        return "127.0.0.1:" + server.getPort();
    }

    private ManagedChannel dial(TransportSecurity s, String target) {
        ManagedChannel c = s.channelBuilder(target).build();
        channels.add(c);
        return c;
    }

    private static Status.Code getVm(ManagedChannel c) {
        try {
            VmServiceGrpc.newBlockingStub(c).withDeadlineAfter(10, TimeUnit.SECONDS)
                    .getVm(GetVmRequest.newBuilder().setName("vms/x").build());
            return Status.Code.OK;
        } catch (StatusRuntimeException e) {
            return e.getStatus().getCode();
        }
    }

    @Test
    void aControllerMayCallPublicMethodsAndAnAgentMayNot() throws Exception {
        String at = startAgent(TlsFiles.in(dir, "agent"));
        assertEquals(Status.Code.OK, getVm(dial(TransportSecurity.mutualTls(TlsFiles.in(dir, "controller")), at)));
        assertEquals(Status.Code.OK, getVm(dial(TransportSecurity.mutualTls(TlsFiles.in(dir, "operator")), at)));
        assertEquals(Status.Code.PERMISSION_DENIED, getVm(dial(TransportSecurity.mutualTls(TlsFiles.in(dir, "agent")), at)));
        // Health is open to every authenticated role.
        HealthGrpc.newBlockingStub(dial(TransportSecurity.mutualTls(TlsFiles.in(dir, "agent")), at))
                .withDeadlineAfter(10, TimeUnit.SECONDS).check(HealthCheckRequest.getDefaultInstance());
    }

    @Test
    void aControllerCannotStreamPages() throws Exception {
        String at = startAgent(TlsFiles.in(dir, "agent"));
        var done = new java.util.concurrent.CompletableFuture<Status>();
        var in = dev.ferry.v1.PageTransferServiceGrpc.newStub(dial(TransportSecurity.mutualTls(TlsFiles.in(dir, "controller")), at))
                .streamPages(new StreamObserver<>() {
                    @Override
                    public void onNext(dev.ferry.v1.PageAck v) {}

                    @Override
                    public void onError(Throwable t) {
                        done.complete(Status.fromThrowable(t));
                    }

                    @Override
                    public void onCompleted() {
                        done.complete(Status.OK);
                    }
                });
        in.onNext(PageBatch.getDefaultInstance());
        assertEquals(Status.Code.PERMISSION_DENIED, done.get(10, TimeUnit.SECONDS).getCode());
    }

    @Test
    void plaintextAndForeignCaClientsAreRefused() throws Exception {
        String at = startAgent(TlsFiles.in(dir, "agent"));
        assertEquals(Status.Code.UNAVAILABLE, getVm(dial(TransportSecurity.insecure(), at)));
        Path other = dir.resolve("other");
        CertificateAuthority.init(other, List.of(), List.of());
        // The client's CA is also trusted by the client, so only the server's refusal stops it.
        Path mixed = dir.resolve("mixed");
        java.nio.file.Files.createDirectories(mixed);
        java.nio.file.Files.writeString(mixed.resolve("ca.crt"), java.nio.file.Files.readString(dir.resolve("ca.crt"))
                + java.nio.file.Files.readString(other.resolve("ca.crt")));
        TlsFiles foreign = new TlsFiles(other.resolve("controller.crt"), other.resolve("controller.key"), mixed.resolve("ca.crt"));
        assertEquals(Status.Code.UNAVAILABLE, getVm(dial(TransportSecurity.mutualTls(foreign), at)));
    }

    @Test
    void aServerThatIsNotAnAgentIsRefusedByTheClient() throws Exception {
        String at = startAgent(TlsFiles.in(dir, "controller")); // valid for 127.0.0.1, but a controller's
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> VmServiceGrpc
                .newBlockingStub(dial(TransportSecurity.mutualTls(TlsFiles.in(dir, "controller")), at))
                .withDeadlineAfter(10, TimeUnit.SECONDS).getVm(GetVmRequest.newBuilder().setName("vms/x").build()));
        assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
        assertTrue(String.valueOf(e.getCause()).contains("not a Ferry agent") || causes(e).contains("not a Ferry agent"),
                causes(e));
    }

    @Test
    void aServerWhoseCertificateDoesNotNameTheDialledHostIsRefused() throws Exception {
        CertificateAuthority ca = CertificateAuthority.create("hosts");
        ca.issue(new PeerIdentity(Role.AGENT, "elsewhere"), List.of("elsewhere.example"), List.of("10.9.9.9"))
                .write(dir.resolve("elsewhere.crt"), dir.resolve("elsewhere.key"));
        ca.issue(new PeerIdentity(Role.CONTROLLER, "c"), List.of(), List.of())
                .write(dir.resolve("c.crt"), dir.resolve("c.key"));
        ca.writeCertificate(dir.resolve("hosts-ca.crt"));
        String at = startAgent(new TlsFiles(dir.resolve("elsewhere.crt"), dir.resolve("elsewhere.key"), dir.resolve("hosts-ca.crt")));
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> VmServiceGrpc
                .newBlockingStub(dial(TransportSecurity.mutualTls(new TlsFiles(dir.resolve("c.crt"), dir.resolve("c.key"),
                        dir.resolve("hosts-ca.crt"))), at))
                .withDeadlineAfter(10, TimeUnit.SECONDS).getVm(GetVmRequest.newBuilder().setName("vms/x").build()));
        assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), causes(e));
    }

    @Test
    void rotatedCertificatesAreUsedByNewConnectionsWithoutARestart() throws Exception {
        TlsFiles controller = TlsFiles.in(dir, "controller");
        String at = startAgent(TlsFiles.in(dir, "agent"));
        TransportSecurity client = TransportSecurity.mutualTls(controller);
        assertEquals(Status.Code.OK, getVm(dial(client, at)));
        BigInteger before = lastClientCert.get().getSerialNumber();

        // Rotate the controller's certificate (same CA): the same TransportSecurity, a new connection.
        CertificateAuthority ca = CertificateAuthority.load(dir);
        ca.issue(new PeerIdentity(Role.CONTROLLER, "controller-2"), List.of("localhost"), List.of("127.0.0.1"))
                .write(controller.cert(), controller.key());
        assertEquals(Status.Code.OK, getVm(dial(client, at)));
        assertNotEquals(before, lastClientCert.get().getSerialNumber());
        assertEquals(new PeerIdentity(Role.CONTROLLER, "controller-2"), PeerIdentity.of(lastClientCert.get()).orElseThrow());

        // Rotate the CA on the agent's side to one that did not sign the controller: new connections are refused.
        CertificateAuthority other = CertificateAuthority.create("other");
        other.issue(new PeerIdentity(Role.AGENT, "agent"), List.of("localhost"), List.of("127.0.0.1"))
                .write(dir.resolve("agent.crt"), dir.resolve("agent.key"));
        other.writeCertificate(dir.resolve("ca.crt"));
        assertEquals(Status.Code.UNAVAILABLE, getVm(dial(TransportSecurity.mutualTls(controller), at)));
    }

    private static String causes(Throwable t) {
        StringBuilder b = new StringBuilder();
        for (Throwable c = t; c != null; c = c.getCause()) {
            b.append(c).append(" <- ");
        }
        return b.toString();
    }
}
