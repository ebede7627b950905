package dev.ferry.control.agent;

import dev.ferry.backends.Backends;
import dev.ferry.control.edge.EdgeGuard;
import dev.ferry.control.edge.EdgeLimits;
import dev.ferry.control.grpc.FaultTransport;
import dev.ferry.control.vm.GuestAdmission;
import dev.ferry.control.vm.HostMemory;
import dev.ferry.control.vm.VmRegistry;
import dev.ferry.control.vm.VmServiceImpl;
import dev.ferry.security.MethodRoles;
import dev.ferry.security.PeerIdentity;
import dev.ferry.security.Role;
import dev.ferry.security.RoleAuthorization;
import dev.ferry.security.TransportSecurity;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.ServerBuilder;
import io.grpc.ServerServiceDefinition;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.netty.shaded.io.netty.channel.EventLoopGroup;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionService;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.ToIntFunction;

/**
 * One Ferry agent: the VM and migration services on the control listener, page transfer and the
 * postcopy pager on the data listener (so pages can travel on a dedicated migration network, as
 * with KubeVirt). Every listener runs under the agent's {@link TransportSecurity} (mutual TLS, and the role
 * table for every call), serves gRPC health checking (NOT_SERVING until {@link #ready()}) and server reflection
 * (v1 and v1alpha), and every service sits behind the {@link EdgeGuard}.
 */
public final class Agent implements AutoCloseable {
    /** Control-plane messages carry device state: allow a few MiB (see migration_service.proto). */
    public static final int CONTROL_MAX_MESSAGE = EdgeLimits.CONTROL_MAX_MESSAGE;
    /** Data-plane batches are about 1 MiB of pages plus a small header. */
    public static final int DATA_MAX_MESSAGE = EdgeLimits.DATA_MAX_MESSAGE;
    /**
     * HTTP/2 receive window of the data listener. With the default 1 MiB each ~1 MiB batch waits a
     * window update, one round trip, which on a busy host costs milliseconds: several batches must
     * be in flight.
     */
    public static final int DATA_FLOW_CONTROL_WINDOW = 32 << 20;

    /** Who the agent's own in-JVM calls to its public services act as (the warm-up's controller). */
    static final PeerIdentity LOCAL = new PeerIdentity(Role.CONTROLLER, "agent-local");

    private final String name;
    private final TransportSecurity security;
    private final Backends backends;
    private final List<ServerServiceDefinition> publicServices = new ArrayList<>();
    private Server local; // guarded by this: the in-process listener for this JVM's own control calls
    private final VmRegistry vms;
    private final VmServiceImpl vmService;
    private final AgentServices services;
    private final HealthStatusManager controlHealth = new HealthStatusManager();
    private final HealthStatusManager dataHealth = new HealthStatusManager();
    private final HealthStatusManager pagerHealth = new HealthStatusManager();
    private final EdgeGuard edge = EdgeGuard.defaults();
    private final Server control;
    private final Server data;
    private final Server pager;
    private final EventLoopGroup pagerLoop;
    private volatile String advertisedData; // what peers are told to dial, when it differs from where we listen
    private volatile String advertisedPager;

    private Agent(String name, TransportSecurity security, ServerBuilder<?> controlBuilder, ServerBuilder<?> dataBuilder,
            ServerBuilder<?> pagerBuilder, EventLoopGroup pagerLoop, Consumer<String> console, Backends backends,
            AgentServices.Factory servicesFactory, GuestAdmission.Limits limits) {
        this.pagerLoop = pagerLoop;
        this.name = name;
        this.security = security;
        this.backends = backends;
        this.vms = new VmRegistry(limits, HostMemory.proc());
        this.services = servicesFactory.create(this);
        this.vmService = new VmServiceImpl(vms, backends, console);
        publicServices.add(vmService.bindService());
        publicServices.addAll(services.controlServices());
        serve(controlBuilder, publicServices, controlHealth, EdgeLimits::controlMessageLimit);
        serve(dataBuilder, services.dataServices(), dataHealth, EdgeLimits::dataMessageLimit);
        serve(pagerBuilder, services.pagerServices(), pagerHealth, EdgeLimits::pagerMessageLimit);
        // Added last, so it runs first: nothing else sees a call the role table refuses.
        controlBuilder.intercept(security.authorization());
        dataBuilder.intercept(security.authorization());
        pagerBuilder.intercept(security.authorization());
        this.control = controlBuilder.build();
        this.data = dataBuilder.build();
        this.pager = pagerBuilder.build();
    }

    /**
     * Adds {@code services} to a listener behind the edge guard, with health (NOT_SERVING until {@link #ready()})
     * and server reflection in both versions clients speak (v1, and v1alpha for older grpcurl and tools).
     */
    @SuppressWarnings("deprecation") // ProtoReflectionService is v1alpha: deprecated, still what many clients ask
    private void serve(ServerBuilder<?> builder, List<ServerServiceDefinition> services, HealthStatusManager health,
            ToIntFunction<String> maxBytes) {
        health.setStatus("", ServingStatus.NOT_SERVING);
        for (ServerServiceDefinition s : services) {
            builder.addService(edge.guard(s, maxBytes));
        }
        builder.addService(edge.guard(health.getHealthService().bindService(), maxBytes))
                .addService(edge.guard(ProtoReflectionServiceV1.newInstance().bindService(), maxBytes))
                .addService(edge.guard(ProtoReflectionService.newInstance().bindService(), maxBytes));
    }

    /** Lets SnapshotVm and RestoreVm use {@code dir} (and nothing outside it); without it both are refused. */
    public void snapshotsIn(java.nio.file.Path dir) {
        vmService.snapshotsIn(dev.ferry.control.vm.SnapshotStore.at(dir));
    }

    /** Reports SERVING on every listener: call once the agent is warmed up and ready for real migrations. */
    public void ready() {
        controlHealth.setStatus("", ServingStatus.SERVING);
        dataHealth.setStatus("", ServingStatus.SERVING);
        pagerHealth.setStatus("", ServingStatus.SERVING);
    }

    /**
     * Starts an agent listening on TCP {@code control} and {@code data} (port 0 picks a free port), running guests
     * on {@code backends}.
     */
    public static Agent start(String name, TransportSecurity security, InetSocketAddress control, InetSocketAddress data,
            Consumer<String> console, Backends backends, AgentServices.Factory services) throws IOException {
        return start(name, security, control, data, new InetSocketAddress(data.getAddress(), 0), console, backends,
                services);
    }

    /** As above, with the pager's listen address given. */
    public static Agent start(String name, TransportSecurity security, InetSocketAddress control, InetSocketAddress data,
            InetSocketAddress pagerAt, Consumer<String> console, Backends backends, AgentServices.Factory services)
            throws IOException {
        return start(name, security, control, data, pagerAt, console, backends, services, GuestAdmission.Limits.DEFAULT);
    }

    /** As above, with the agent's VM and guest-memory limits. */
    public static Agent start(String name, TransportSecurity security, InetSocketAddress control, InetSocketAddress data,
            InetSocketAddress pagerAt, Consumer<String> console, Backends backends, AgentServices.Factory services,
            GuestAdmission.Limits limits)
            throws IOException {
        // The pager gets its own listener on the data network, with its own event loop and handlers run
        // on it: a fault request never waits behind megabytes of background pages.
        EventLoopGroup loop = FaultTransport.eventLoop("ferry-pager-loop");
        NettyServerBuilder pager = security.serverBuilder(pagerAt)
                .bossEventLoopGroup(loop).workerEventLoopGroup(loop).channelType(FaultTransport.serverChannelType())
                .directExecutor();
        return start(name, security,
                EdgeGuard.limit(security.serverBuilder(control), CONTROL_MAX_MESSAGE,
                        EdgeLimits.CONTROL_MAX_CALLS_PER_CONNECTION),
                EdgeGuard.limit(security.serverBuilder(data), DATA_MAX_MESSAGE,
                        EdgeLimits.DATA_MAX_CALLS_PER_CONNECTION).flowControlWindow(DATA_FLOW_CONTROL_WINDOW),
                EdgeGuard.limit(pager, EdgeLimits.PAGER_MAX_MESSAGE, EdgeLimits.PAGER_MAX_CALLS_PER_CONNECTION),
                loop, console, backends, services, limits);
    }

    /**
     * Starts an agent on the given server builders, which must carry {@code security}'s credentials
     * (the role table is added here).
     */
    public static Agent start(String name, TransportSecurity security, ServerBuilder<?> control, ServerBuilder<?> data,
            ServerBuilder<?> pager, EventLoopGroup pagerLoop, Consumer<String> console, Backends backends,
            AgentServices.Factory services) throws IOException {
        return start(name, security, control, data, pager, pagerLoop, console, backends, services,
                GuestAdmission.Limits.DEFAULT);
    }

    /** As above, with the agent's VM and guest-memory limits. */
    public static Agent start(String name, TransportSecurity security, ServerBuilder<?> control, ServerBuilder<?> data,
            ServerBuilder<?> pager, EventLoopGroup pagerLoop, Consumer<String> console, Backends backends,
            AgentServices.Factory services, GuestAdmission.Limits limits) throws IOException {
        Agent a = new Agent(name, security, control, data, pager, pagerLoop, console, backends, services, limits);
        a.control.start();
        try {
            a.data.start();
            a.pager.start();
        } catch (IOException e) {
            a.control.shutdownNow();
            a.data.shutdownNow();
            throw e;
        }
        return a; // NOT_SERVING until ready()
    }

    public String name() {
        return name;
    }

    /** How this agent's listeners and its channels to other agents are protected. */
    public TransportSecurity security() {
        return security;
    }

    /**
     * A channel to this agent's VM and migration services from inside this JVM, acting as a controller
     * (the warm-up drives its migrations with it). In-process only: no socket reaches it.
     */
    synchronized ManagedChannel localControlChannel() throws IOException {
        String id = "ferry-local-" + name + "-" + System.identityHashCode(this);
        if (local == null) {
            InProcessServerBuilder b = InProcessServerBuilder.forName(id);
            publicServices.forEach(b::addService);
            local = b.intercept(new RoleAuthorization(MethodRoles.ferry(), call -> Optional.of(LOCAL))).build().start();
        }
        return InProcessChannelBuilder.forName(id).build();
    }

    public VmRegistry vms() {
        return vms;
    }

    /** The backends this agent runs guests on, probed once at start. */
    public Backends backends() {
        return backends;
    }

    /** Every service on every listener, for the check that each of their methods is in the role table. */
    List<ServerServiceDefinition> servedServices() {
        List<ServerServiceDefinition> all = new ArrayList<>(control.getServices());
        all.addAll(data.getServices());
        all.addAll(pager.getServices());
        return all;
    }

    /** host:port of the control listener. */
    public String controlAddress() {
        return address(control);
    }

    /** host:port peers dial for the data listener (its advertised address, if set). */
    public String dataAddress() {
        String a = advertisedData;
        return a != null ? a : address(data);
    }

    /** host:port peers dial for the postcopy pager (its advertised address, if set). */
    public String pagerAddress() {
        String a = advertisedPager;
        return a != null ? a : address(pager);
    }

    /** Where the data listener actually listens. */
    public String dataListenAddress() {
        return address(data);
    }

    /** Where the pager listener actually listens. */
    public String pagerListenAddress() {
        return address(pager);
    }

    /**
     * Addresses to hand to peers instead of the listen addresses (NAT, proxies, a dedicated migration
     * network); null keeps the listen address.
     */
    public void advertise(String data, String pager) {
        this.advertisedData = data;
        this.advertisedPager = pager;
    }

    private static String address(Server s) {
        List<? extends java.net.SocketAddress> l = s.getListenSockets();
        if (!l.isEmpty() && l.get(0) instanceof InetSocketAddress i) {
            return i.getHostString() + ":" + i.getPort();
        }
        return l.isEmpty() ? "" : l.get(0).toString();
    }

    public void awaitTermination() throws InterruptedException {
        control.awaitTermination();
        data.awaitTermination();
        pager.awaitTermination();
    }

    /** Stops serving, aborts migrations, and frees every VM. */
    @Override
    public void close() {
        controlHealth.enterTerminalState();
        dataHealth.enterTerminalState();
        pagerHealth.enterTerminalState();
        control.shutdown();
        data.shutdown();
        pager.shutdown();
        synchronized (this) {
            if (local != null) {
                local.shutdownNow();
            }
        }
        services.close();
        try {
            if (!control.awaitTermination(5, TimeUnit.SECONDS)) {
                control.shutdownNow();
            }
            if (!data.awaitTermination(5, TimeUnit.SECONDS)) {
                data.shutdownNow();
            }
            if (!pager.awaitTermination(5, TimeUnit.SECONDS)) {
                pager.shutdownNow();
            }
        } catch (InterruptedException e) {
            control.shutdownNow();
            data.shutdownNow();
            Thread.currentThread().interrupt();
        }
        vms.close();
        edge.close();
        if (pagerLoop != null) {
            pagerLoop.shutdownGracefully(0, 1, TimeUnit.SECONDS);
        }
    }
}
