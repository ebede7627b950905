package dev.ferry.control.agent;

import dev.ferry.backends.Backends;
import dev.ferry.control.grpc.FaultTransport;
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
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * One Ferry agent: the VM and migration services on the control listener, page transfer and the
 * postcopy pager on the data listener (so pages can travel on a dedicated migration network, as
 * with KubeVirt). Both listeners serve gRPC health checking and server reflection. Every listener
 * runs under the agent's {@link TransportSecurity}: mutual TLS, and the role table for every call.
 */
public final class Agent implements AutoCloseable {
    /** Control-plane messages carry device state: allow a few MiB (see migration_service.proto). */
    public static final int CONTROL_MAX_MESSAGE = 16 << 20;
    /** Data-plane batches are about 1 MiB of pages plus a small header. */
    public static final int DATA_MAX_MESSAGE = 8 << 20;
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
    private final VmRegistry vms = new VmRegistry();
    private final AgentServices services;
    private final HealthStatusManager controlHealth = new HealthStatusManager();
    private final HealthStatusManager dataHealth = new HealthStatusManager();
    private final Server control;
    private final Server data;
    private final Server pager;
    private final EventLoopGroup pagerLoop;
    private volatile String advertisedData; // what peers are told to dial, when it differs from where we listen
    private volatile String advertisedPager;

    private Agent(String name, TransportSecurity security, ServerBuilder<?> controlBuilder, ServerBuilder<?> dataBuilder,
            ServerBuilder<?> pagerBuilder, EventLoopGroup pagerLoop, Consumer<String> console, Backends backends,
            AgentServices.Factory servicesFactory) {
        this.pagerLoop = pagerLoop;
        this.name = name;
        this.security = security;
        this.backends = backends;
        this.services = servicesFactory.create(this);
        publicServices.add(new VmServiceImpl(vms, backends, console).bindService());
        publicServices.addAll(services.controlServices());
        publicServices.forEach(controlBuilder::addService);
        controlBuilder.addService(controlHealth.getHealthService()).addService(ProtoReflectionServiceV1.newInstance());
        for (ServerServiceDefinition s : services.dataServices()) {
            dataBuilder.addService(s);
        }
        dataBuilder.addService(dataHealth.getHealthService()).addService(ProtoReflectionServiceV1.newInstance());
        for (ServerServiceDefinition s : services.pagerServices()) {
            pagerBuilder.addService(s);
        }
        // Added last, so it runs first: nothing else sees a call the role table refuses.
        controlBuilder.intercept(security.authorization());
        dataBuilder.intercept(security.authorization());
        pagerBuilder.intercept(security.authorization());
        this.control = controlBuilder.build();
        this.data = dataBuilder.build();
        this.pager = pagerBuilder.build();
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
        // The pager gets its own listener on the data network, with its own event loop and handlers run
        // on it: a fault request never waits behind megabytes of background pages.
        EventLoopGroup loop = FaultTransport.eventLoop("ferry-pager-loop");
        NettyServerBuilder pager = security.serverBuilder(pagerAt)
                .bossEventLoopGroup(loop).workerEventLoopGroup(loop).channelType(FaultTransport.serverChannelType())
                .directExecutor().maxInboundMessageSize(DATA_MAX_MESSAGE);
        return start(name, security, security.serverBuilder(control).maxInboundMessageSize(CONTROL_MAX_MESSAGE),
                security.serverBuilder(data).maxInboundMessageSize(DATA_MAX_MESSAGE)
                        .flowControlWindow(DATA_FLOW_CONTROL_WINDOW), pager, loop, console, backends, services);
    }

    /**
     * Starts an agent on the given server builders, which must carry {@code security}'s credentials
     * (the role table is added here).
     */
    public static Agent start(String name, TransportSecurity security, ServerBuilder<?> control, ServerBuilder<?> data,
            ServerBuilder<?> pager, EventLoopGroup pagerLoop, Consumer<String> console, Backends backends,
            AgentServices.Factory services) throws IOException {
        Agent a = new Agent(name, security, control, data, pager, pagerLoop, console, backends, services);
        a.control.start();
        try {
            a.data.start();
            a.pager.start();
        } catch (IOException e) {
            a.control.shutdownNow();
            a.data.shutdownNow();
            throw e;
        }
        a.controlHealth.setStatus("", ServingStatus.SERVING);
        a.dataHealth.setStatus("", ServingStatus.SERVING);
        return a;
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
        if (pagerLoop != null) {
            pagerLoop.shutdownGracefully(0, 1, TimeUnit.SECONDS);
        }
    }
}
