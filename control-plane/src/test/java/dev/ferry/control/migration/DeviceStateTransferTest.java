package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.Agent;
import dev.ferry.control.agent.AgentServices;
import dev.ferry.kvm.state.v1.VmState;
import dev.ferry.kvm.state.v1.WorkloadPortState;
import dev.ferry.state.Section;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateCodec;
import dev.ferry.state.StateException;
import dev.ferry.state.v1.StateStream;
import dev.ferry.v1.CompleteIncomingMigrationRequest;
import dev.ferry.v1.IncompatibilityDetails;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationConfig;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.NegotiateMigrationResponse;
import dev.ferry.v1.TransferDeviceStateRequest;
import dev.ferry.vm.Backend;
import io.grpc.ForwardingServerCall;
import io.grpc.ForwardingServerCallListener;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.UnaryOperator;
import java.util.zip.CRC32C;
import org.junit.jupiter.params.ParameterizedTest;

/**
 * The destination validates the device state as a restore would, before anything runs, and applies nothing when
 * it refuses: two agents in this JVM migrate a real guest while the state the source sent (inside
 * CompleteIncomingMigration, or by TransferDeviceState to a destination without DEVICE_STATE_AT_SWITCHOVER) is
 * replaced by a damaged copy. The destination must answer with the right code and a
 * description naming the section and field, its VM must be as it was, and the source must keep its guest.
 */
class DeviceStateTransferTest {
    private static final String TRANSFER = MigrationServiceGrpc.getTransferDeviceStateMethod().getFullMethodName();
    private static final String COMPLETE = MigrationServiceGrpc.getCompleteIncomingMigrationMethod().getFullMethodName();
    private static final String NEGOTIATE = MigrationServiceGrpc.getNegotiateMigrationMethod().getFullMethodName();

    /** How the state travels: inside CompleteIncomingMigration (the default), or by TransferDeviceState. */
    enum Route {
        AT_SWITCHOVER,
        /** The destination's answer to NegotiateMigration loses DEVICE_STATE_AT_SWITCHOVER, as from an older agent. */
        TRANSFER_DEVICE_STATE
    }
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
        volatile String method; // the call that carried the state
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

    @ParameterizedTest(name = "{0} on {1}, {2}")
    @org.junit.jupiter.params.provider.MethodSource("cases")
    void aDamagedStreamIsRefusedBeforeTheSwitchoverAndNothingIsApplied(Damage damage, Backend backend, Route route)
            throws Exception {
        BackendTestSupport.assume(backend);
        Seen seen = new Seen();
        AtomicReference<Agent> dstRef = new AtomicReference<>();
        try (Agent src = InProcessAgents.start("ds-src", backend, MigrationServices::new, certs);
                Agent dst = InProcessAgents.start("ds-dst", backend, destination(damage(damage), route, seen, dstRef), certs)) {
            dstRef.set(dst);
            ManagedChannel s = dev.ferry.security.TransportSecurity.mutualTls(
                    dev.ferry.security.TlsFiles.in(certs, "controller")).channelBuilder(src.controlAddress()).build();
            try {
                String vm = InProcessAgents.createVm(s, "ds", 8 << 20);
                Migration end = InProcessAgents.migrate(s, "ds", vm, dst.controlAddress());

                assertNotNull(seen.status, "the destination answered the call carrying the state");
                assertEquals(route == Route.AT_SWITCHOVER ? COMPLETE : TRANSFER, seen.method);
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
                InProcessAgents.assertRunsIntact(s, vm);
                assertTrue(dst.vms().list().isEmpty(), "the destination discarded its copy");
            } finally {
                s.shutdownNow();
            }
        }
    }

    /** Device state in CompleteIncomingMigration that the destination did not agree to take there. */
    enum Misuse {
        /** The destination did not accept DEVICE_STATE_AT_SWITCHOVER (the source was told it did). */
        NOT_ACCEPTED,
        /** TransferDeviceState already delivered the state; the switchover carries it again. */
        ALREADY_SENT
    }

    @ParameterizedTest(name = "{0}")
    @org.junit.jupiter.params.provider.EnumSource(Misuse.class)
    void stateTheSwitchoverMayNotCarryIsRefusedAndTheGuestStays(Misuse misuse) throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        Seen seen = new Seen();
        AtomicReference<ByteString> transferred = new AtomicReference<>();
        ServerInterceptor misuseIt = new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                    ServerCallHandler<Q, R> next) {
                String method = call.getMethodDescriptor().getFullMethodName();
                ServerCall<Q, R> out = new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
                    @Override
                    @SuppressWarnings("unchecked")
                    public void sendMessage(R message) {
                        if (message instanceof NegotiateMigrationResponse r) {
                            MigrationConfig.Builder accepted = withoutStateAtSwitchover(r.getAccepted());
                            if (misuse == Misuse.NOT_ACCEPTED) { // the source believes it was
                                accepted.addFeatures(MigrationConfig.Feature.DEVICE_STATE_AT_SWITCHOVER);
                            }
                            message = (R) r.toBuilder().setAccepted(accepted).build();
                        }
                        super.sendMessage(message);
                    }

                    @Override
                    public void close(Status status, Metadata trailers) {
                        if (method.equals(COMPLETE)) {
                            seen.status = status;
                        }
                        super.close(status, trailers);
                    }
                };
                return new ForwardingServerCallListener.SimpleForwardingServerCallListener<>(
                        next.startCall(out, headers)) {
                    @Override
                    @SuppressWarnings("unchecked")
                    public void onMessage(Q message) {
                        if (message instanceof dev.ferry.v1.NegotiateMigrationRequest r && misuse == Misuse.NOT_ACCEPTED) {
                            message = (Q) r.toBuilder().setProposed(withoutStateAtSwitchover(r.getProposed())).build();
                        } else if (message instanceof TransferDeviceStateRequest t) {
                            transferred.set(t.getState());
                        } else if (message instanceof CompleteIncomingMigrationRequest c && transferred.get() != null) {
                            message = (Q) c.toBuilder().setDeviceState(transferred.get()).build(); // once more
                        }
                        super.onMessage(message);
                    }
                };
            }
        };
        AtomicReference<Agent> dstRef = new AtomicReference<>();
        try (Agent src = InProcessAgents.start("dm-src", Backend.PROCESS, MigrationServices::new, certs);
                Agent dst = InProcessAgents.start("dm-dst", Backend.PROCESS, InterceptedServices.control(misuseIt), certs)) {
            dstRef.set(dst);
            ManagedChannel s = dev.ferry.security.TransportSecurity.mutualTls(
                    dev.ferry.security.TlsFiles.in(certs, "controller")).channelBuilder(src.controlAddress()).build();
            try {
                String vm = InProcessAgents.createVm(s, "ds", 8 << 20);
                Migration end = InProcessAgents.migrate(s, "ds", vm, dst.controlAddress());
                assertNotNull(seen.status, "the destination answered CompleteIncomingMigration");
                assertEquals(Status.Code.INVALID_ARGUMENT, seen.status.getCode(), seen.status.toString());
                assertTrue(seen.status.getDescription().contains(misuse == Misuse.NOT_ACCEPTED
                        ? "device_state needs the accepted feature DEVICE_STATE_AT_SWITCHOVER"
                        : "device_state was already sent by TransferDeviceState"), seen.status.getDescription());
                assertEquals(misuse == Misuse.ALREADY_SENT, transferred.get() != null, "how the state went");
                assertEquals(Migration.Phase.FAILED, end.getPhase());
                InProcessAgents.assertRunsIntact(s, vm);
                assertTrue(dst.vms().list().isEmpty(), "the destination discarded its copy");
            } finally {
                s.shutdownNow();
            }
        }
    }

    /** {@code c} without DEVICE_STATE_AT_SWITCHOVER among its features. */
    static MigrationConfig.Builder withoutStateAtSwitchover(MigrationConfig c) {
        MigrationConfig.Builder b = c.toBuilder().clearFeatures();
        c.getFeaturesList().stream().filter(f -> f != MigrationConfig.Feature.DEVICE_STATE_AT_SWITCHOVER)
                .forEach(b::addFeatures);
        return b;
    }

    static List<org.junit.jupiter.params.provider.Arguments> cases() {
        List<org.junit.jupiter.params.provider.Arguments> all = new ArrayList<>();
        for (Backend b : Backend.values()) {
            for (Damage d : Damage.values()) {
                for (Route r : Route.values()) {
                    all.add(org.junit.jupiter.params.provider.Arguments.of(d, b, r));
                }
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

    /**
     * The destination's control services, the device state in its TransferDeviceState or CompleteIncomingMigration
     * requests replaced by a damaged copy; with {@link Route#TRANSFER_DEVICE_STATE} its NegotiateMigration answers
     * do not offer DEVICE_STATE_AT_SWITCHOVER.
     */
    private static AgentServices.Factory destination(UnaryOperator<byte[]> damage, Route route, Seen seen,
            AtomicReference<Agent> self) {
        ServerInterceptor tamper = new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                    ServerCallHandler<Q, R> next) {
                String method = call.getMethodDescriptor().getFullMethodName();
                if (method.equals(NEGOTIATE) && route == Route.TRANSFER_DEVICE_STATE) {
                    return next.startCall(new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
                        @Override
                        @SuppressWarnings("unchecked")
                        public void sendMessage(R message) {
                            NegotiateMigrationResponse r = (NegotiateMigrationResponse) message;
                            super.sendMessage((R) r.toBuilder().setAccepted(withoutStateAtSwitchover(r.getAccepted()))
                                    .build());
                        }
                    }, headers);
                }
                if (!method.equals(TRANSFER) && !method.equals(COMPLETE)) {
                    return next.startCall(call, headers);
                }
                java.util.concurrent.atomic.AtomicBoolean carried = new java.util.concurrent.atomic.AtomicBoolean();
                ServerCall<Q, R> watched = new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
                    @Override
                    public void close(Status status, Metadata trailers) {
                        if (carried.get()) {
                            seen.devicesAfter = devicesOf(self.get());
                            seen.status = status;
                            seen.method = method;
                            com.google.rpc.Status st = StatusProto.fromStatusAndTrailers(status, trailers);
                            if (st != null && st.getDetailsCount() > 0) {
                                try {
                                    seen.details = st.getDetails(0).unpack(IncompatibilityDetails.class);
                                } catch (InvalidProtocolBufferException e) {
                                    throw new AssertionError(e);
                                }
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
                        ByteString state = message instanceof TransferDeviceStateRequest t ? t.getState()
                                : ((CompleteIncomingMigrationRequest) message).getDeviceState();
                        if (state.isEmpty()) {
                            super.onMessage(message);
                            return;
                        }
                        carried.set(true);
                        try {
                            seen.sent = StateCodec.decode(state.toByteArray());
                        } catch (StateException e) {
                            throw new AssertionError("the source sent a bad stream", e);
                        }
                        seen.devicesBefore = devicesOf(self.get());
                        ByteString damaged = ByteString.copyFrom(damage.apply(state.toByteArray()));
                        super.onMessage((Q) (message instanceof TransferDeviceStateRequest t
                                ? t.toBuilder().setState(damaged).build()
                                : ((CompleteIncomingMigrationRequest) message).toBuilder().setDeviceState(damaged)
                                        .build()));
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

}
