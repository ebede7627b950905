package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import dev.ferry.backends.BackendTestSupport;
import dev.ferry.backends.Backends;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.agent.AgentServices;
import dev.ferry.kvm.state.v1.VmState;
import dev.ferry.kvm.state.v1.WorkloadPortState;
import dev.ferry.state.Section;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateCodec;
import dev.ferry.state.StateException;
import dev.ferry.state.v1.StateStream;
import dev.ferry.v1.CheckVmMemoryRequest;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.GetMigrationRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.IncompatibilityDetails;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.TransferDeviceStateRequest;
import dev.ferry.v1.Vm;
import dev.ferry.v1.VmServiceGrpc;
import dev.ferry.v1.WatchMigrationRequest;
import dev.ferry.v1.WorkloadSpec;
import dev.ferry.vm.Backend;
import io.grpc.ForwardingServerCall;
import io.grpc.ForwardingServerCallListener;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.UnaryOperator;
import java.util.zip.CRC32C;
import org.junit.jupiter.params.ParameterizedTest;

/**
 * TransferDeviceState validates the stream as a restore would, before the switchover, and applies nothing when
 * it refuses: two agents in this JVM migrate a real guest while the destination's TransferDeviceState request is
 * replaced by a damaged copy of what the source sent. The destination must answer with the right code and a
 * description naming the section and field, its VM must be as it was, and the source must keep its guest.
 */
class DeviceStateTransferTest {
    private static final String TRANSFER = MigrationServiceGrpc.getTransferDeviceStateMethod().getFullMethodName();
    @org.junit.jupiter.api.io.TempDir
    static java.nio.file.Path certs;

    @org.junit.jupiter.api.BeforeAll
    static void certificates() throws Exception {
        dev.ferry.security.CertificateAuthority.init(certs, java.util.List.of(), java.util.List.of());
    }

    /** What the destination saw and answered. */
    static final class Seen {
        volatile Status status;
        volatile IncompatibilityDetails details;
        volatile SectionSet devicesBefore;
        volatile SectionSet devicesAfter;
        volatile SectionSet sent;
    }

    /** Ways to damage the stream the source sent. */
    enum Damage {
        /** A required section left out. */
        MISSING_SECTION,
        /** Sections whose values their components refuse. */
        INVALID_VALUES,
        /** A bit flipped in the payload: the checksum no longer matches. */
        CORRUPT_CHECKSUM,
        /** A stream format this build does not read. */
        FUTURE_FORMAT
    }

    @ParameterizedTest(name = "{0} on {1}")
    @org.junit.jupiter.params.provider.MethodSource("cases")
    void aDamagedStreamIsRefusedBeforeTheSwitchoverAndNothingIsApplied(Damage damage, Backend backend)
            throws Exception {
        BackendTestSupport.assume(backend);
        Seen seen = new Seen();
        AtomicReference<Agent> dstRef = new AtomicReference<>();
        try (Agent src = agent("ds-src", backend, MigrationServices::new);
                Agent dst = agent("ds-dst", backend, destination(damage(damage), seen, dstRef))) {
            dstRef.set(dst);
            ManagedChannel s = dev.ferry.security.TransportSecurity.mutualTls(
                    dev.ferry.security.TlsFiles.in(certs, "controller")).channelBuilder(src.controlAddress()).build();
            try {
                String vm = createVm(s);
                Migration end = migrate(s, vm, dst.controlAddress());

                assertNotNull(seen.status, "the destination answered TransferDeviceState");
                String why = seen.status.getDescription();
                switch (damage) {
                    case MISSING_SECTION -> {
                        assertEquals(Status.Code.FAILED_PRECONDITION, seen.status.getCode(), why);
                        assertTrue(why.contains("section device.serial/com1: required section is missing"), why);
                        assertEquals("state_sections[device.serial/com1]",
                                seen.details.getMismatches(0).getField());
                    }
                    case INVALID_VALUES -> {
                        assertEquals(Status.Code.FAILED_PRECONDITION, seen.status.getCode(), why);
                        assertTrue(why.contains("section device.workload: pending_commands: "), why);
                        if (backend == Backend.KVM) {
                            assertTrue(why.contains("section kvm.vm: pit.channels[0].mode: 300 does not fit"), why);
                            assertEquals(2, seen.details.getMismatchesCount(), seen.details.toString());
                        }
                    }
                    case CORRUPT_CHECKSUM -> {
                        assertEquals(Status.Code.DATA_LOSS, seen.status.getCode(), why);
                        assertTrue(why.contains("checksum mismatch"), why);
                    }
                    case FUTURE_FORMAT -> {
                        assertEquals(Status.Code.FAILED_PRECONDITION, seen.status.getCode(), why);
                        assertTrue(why.contains("state stream format version 2 is not supported"), why);
                    }
                }
                // Nothing applied: the destination's devices are as before the call, and the source's
                // (which a restore would have applied) differ from them.
                assertEquals(seen.devicesBefore, seen.devicesAfter);
                assertNotEquals(devices(seen.sent), seen.devicesAfter, "the check could not see a restore");

                assertEquals(Migration.Phase.FAILED, end.getPhase());
                assertTrue(end.getError().getMessage().contains(seen.status.getCode().name()), end.getError().toString());
                assertRunsIntact(s, vm);
                assertTrue(dst.vms().list().isEmpty(), "the destination discarded its copy");
            } finally {
                s.shutdownNow();
            }
        }
    }

    static List<org.junit.jupiter.params.provider.Arguments> cases() {
        List<org.junit.jupiter.params.provider.Arguments> all = new ArrayList<>();
        for (Backend b : Backend.values()) {
            for (Damage d : Damage.values()) {
                all.add(org.junit.jupiter.params.provider.Arguments.of(d, b));
            }
        }
        return all;
    }

    /** The stream as the damaged copy carries it. */
    private static UnaryOperator<byte[]> damage(Damage d) {
        return envelope -> {
            try {
                return switch (d) {
                    case MISSING_SECTION -> StateCodec.encode(SectionSet.of(StateCodec.decode(envelope).sections()
                            .stream().filter(s -> !s.name().equals("device.serial")).toList()));
                    case INVALID_VALUES -> StateCodec.encode(SectionSet.of(StateCodec.decode(envelope).sections()
                            .stream().map(DeviceStateTransferTest::invalid).toList()));
                    case CORRUPT_CHECKSUM -> {
                        byte[] b = envelope.clone();
                        b[b.length - 1] ^= 0x40;
                        yield b;
                    }
                    case FUTURE_FORMAT -> {
                        byte[] payload = StateStream.parseFrom(ByteBuffer.wrap(envelope, StateCodec.HEADER_BYTES,
                                envelope.length - StateCodec.HEADER_BYTES)).toBuilder().setFormatVersion(2).build()
                                .toByteArray();
                        CRC32C crc = new CRC32C();
                        crc.update(payload);
                        yield ByteBuffer.allocate(StateCodec.HEADER_BYTES + payload.length)
                                .put(envelope, 0, 12).putLong(payload.length).putInt((int) crc.getValue())
                                .put(payload).array();
                    }
                };
            } catch (StateException | InvalidProtocolBufferException e) {
                throw new AssertionError(e);
            }
        };
    }

    /** A section with a value its component refuses (the workload port and, on KVM, the PIT). */
    private static Section invalid(Section s) {
        try {
            ByteString payload = switch (s.name()) {
                case "device.workload" -> {
                    WorkloadPortState w = WorkloadPortState.parseFrom(s.payload());
                    yield w.toBuilder().addPendingCommands(0).build().toByteString();
                }
                case "kvm.vm" -> {
                    VmState v = VmState.parseFrom(s.payload());
                    yield v.toBuilder().setPit(v.getPit().toBuilder().setChannels(0,
                            v.getPit().getChannels(0).toBuilder().setMode(300))).build().toByteString();
                }
                default -> s.payload();
            };
            return new Section(s.name(), s.instanceId(), s.version(), s.minReaderVersion(), s.required(), payload);
        } catch (InvalidProtocolBufferException e) {
            throw new AssertionError(e);
        }
    }

    /** The destination's control services, its TransferDeviceState requests replaced by damaged copies. */
    private static AgentServices.Factory destination(UnaryOperator<byte[]> damage, Seen seen,
            AtomicReference<Agent> self) {
        ServerInterceptor tamper = new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                    ServerCallHandler<Q, R> next) {
                if (!call.getMethodDescriptor().getFullMethodName().equals(TRANSFER)) {
                    return next.startCall(call, headers);
                }
                ServerCall<Q, R> watched = new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
                    @Override
                    public void close(Status status, Metadata trailers) {
                        seen.devicesAfter = devicesOf(self.get());
                        seen.status = status;
                        com.google.rpc.Status st = StatusProto.fromStatusAndTrailers(status, trailers);
                        if (st != null && st.getDetailsCount() > 0) {
                            try {
                                seen.details = st.getDetails(0).unpack(IncompatibilityDetails.class);
                            } catch (InvalidProtocolBufferException e) {
                                throw new AssertionError(e);
                            }
                        }
                        super.close(status, trailers);
                    }
                };
                return new ForwardingServerCallListener.SimpleForwardingServerCallListener<>(
                        next.startCall(watched, headers)) {
                    @Override
                    @SuppressWarnings("unchecked")
                    public void onMessage(Q message) {
                        TransferDeviceStateRequest req = (TransferDeviceStateRequest) message;
                        try {
                            seen.sent = StateCodec.decode(req.getState().toByteArray());
                        } catch (StateException e) {
                            throw new AssertionError("the source sent a bad stream", e);
                        }
                        seen.devicesBefore = devicesOf(self.get());
                        super.onMessage((Q) req.toBuilder().setState(ByteString.copyFrom(
                                damage.apply(req.getState().toByteArray()))).build());
                    }
                };
            }
        };
        return InterceptedServices.control(tamper);
    }

    /** The device sections of the destination's one VM: pure device state, no clock or TSC that moves by itself. */
    private static SectionSet devicesOf(Agent dst) {
        return devices(dst.vms().list().get(0).vm().saveState());
    }

    private static SectionSet devices(SectionSet all) {
        return SectionSet.of(all.sections().stream().filter(s -> s.name().startsWith("device.")).toList());
    }

    private static Agent agent(String name, Backend backend, AgentServices.Factory services) throws Exception {
        InetSocketAddress any = new InetSocketAddress("127.0.0.1", 0);
        return Agent.start(name, dev.ferry.security.TransportSecurity.mutualTls(
                dev.ferry.security.TlsFiles.in(certs, "agent")), any, any, line -> { }, Backends.open(Backends.Choice.valueOf(backend.name())), services);
    }

    private static Migration migrate(ManagedChannel src, String vm, String to) {
        var stub = MigrationServiceGrpc.newBlockingStub(src);
        Migration m = stub.createMigration(CreateMigrationRequest.newBuilder().setMigrationId("ds")
                .setMigration(Migration.newBuilder().setVm(vm).setDestinationAddress(to)).build());
        Iterator<Migration> it = stub.watchMigration(WatchMigrationRequest.newBuilder().setName(m.getName()).build());
        while (it.hasNext()) {
            it.next();
        }
        return stub.getMigration(GetMigrationRequest.newBuilder().setName(m.getName()).build());
    }

    private static String createVm(ManagedChannel ch) {
        return VmServiceGrpc.newBlockingStub(ch).createVm(CreateVmRequest.newBuilder().setVmId("ds").setVm(Vm.newBuilder().setVcpuCount(1)
                .setMemoryBytes(64 << 20).setWorkload(WorkloadSpec.newBuilder().setWorkingSetBytes(8 << 20)
                        .setDirtyRateBytesPerSecond(4 << 20))).build()).getName();
    }

    private static void assertRunsIntact(ManagedChannel ch, String vm) {
        var vms = VmServiceGrpc.newBlockingStub(ch);
        assertEquals(Vm.State.RUNNING, vms.getVm(GetVmRequest.newBuilder().setName(vm).build()).getState());
        assertEquals(0, vms.checkVmMemory(CheckVmMemoryRequest.newBuilder().setName(vm).build()).getWrongPages());
    }
}
