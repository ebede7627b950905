package dev.ferry.security;

import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.PageTransferServiceGrpc;
import dev.ferry.v1.PostcopyPagerServiceGrpc;
import dev.ferry.v1.VmServiceGrpc;
import io.grpc.MethodDescriptor;
import io.grpc.ServiceDescriptor;
import io.grpc.health.v1.HealthGrpc;
import java.util.EnumSet;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;

/**
 * The one table of who may call what, on every listener of an agent. A method that is not in it is
 * refused to everyone, so a new RPC stays closed until someone decides who may call it.
 *
 * <pre>
 * VmService/*, MigrationService public calls      controller, operator
 * MigrationService agent-to-agent calls           agent
 * PageTransferService/*, PostcopyPagerService/*   agent
 * health and server reflection                    any authenticated peer
 * </pre>
 */
public final class MethodRoles {
    private static final Set<Role> PUBLIC = EnumSet.of(Role.CONTROLLER, Role.OPERATOR);
    private static final Set<Role> AGENTS = EnumSet.of(Role.AGENT);
    private static final Set<Role> ANYONE = EnumSet.allOf(Role.class);

    private static final MethodRoles FERRY = build();

    private final Map<String, Set<Role>> byMethod;

    private MethodRoles(Map<String, Set<Role>> byMethod) {
        this.byMethod = byMethod;
    }

    /** The table of Ferry's agents. */
    public static MethodRoles ferry() {
        return FERRY;
    }

    /** Roles allowed to call {@code fullMethodName} ("package.Service/Method"); empty when the method is not listed. */
    public Optional<Set<Role>> rolesFor(String fullMethodName) {
        return Optional.ofNullable(byMethod.get(fullMethodName));
    }

    /** Every listed method, sorted: for tests and documentation. */
    public Set<String> methods() {
        return byMethod.keySet();
    }

    private static MethodRoles build() {
        Map<String, Set<Role>> t = new TreeMap<>();
        for (MethodDescriptor<?, ?> m : VmServiceGrpc.getServiceDescriptor().getMethods()) {
            t.put(m.getFullMethodName(), PUBLIC);
        }
        put(t, PUBLIC, MigrationServiceGrpc.getCreateMigrationMethod(), MigrationServiceGrpc.getGetMigrationMethod(),
                MigrationServiceGrpc.getListMigrationsMethod(), MigrationServiceGrpc.getCancelMigrationMethod(),
                MigrationServiceGrpc.getWatchMigrationMethod(), MigrationServiceGrpc.getSwitchToPostcopyMethod(),
                MigrationServiceGrpc.getResumeMigrationMethod(), MigrationServiceGrpc.getUpdateMigrationMethod(),
                MigrationServiceGrpc.getGetMigrationLimitsMethod());
        put(t, AGENTS, MigrationServiceGrpc.getNegotiateMigrationMethod(), MigrationServiceGrpc.getTransferDeviceStateMethod(),
                MigrationServiceGrpc.getCompleteIncomingMigrationMethod(),
                MigrationServiceGrpc.getCompleteIncomingPostcopyMethod(),
                MigrationServiceGrpc.getResumeIncomingMigrationMethod(),
                MigrationServiceGrpc.getAbortIncomingMigrationMethod(),
                MigrationServiceGrpc.getVerifyIncomingMigrationMethod(),
                MigrationServiceGrpc.getCommitIncomingMigrationMethod());
        all(t, AGENTS, PageTransferServiceGrpc.getServiceDescriptor());
        all(t, AGENTS, PostcopyPagerServiceGrpc.getServiceDescriptor());
        all(t, ANYONE, HealthGrpc.getServiceDescriptor());
        all(t, ANYONE, io.grpc.reflection.v1.ServerReflectionGrpc.getServiceDescriptor());
        all(t, ANYONE, io.grpc.reflection.v1alpha.ServerReflectionGrpc.getServiceDescriptor());
        return new MethodRoles(java.util.Collections.unmodifiableMap(t));
    }

    private static void put(Map<String, Set<Role>> t, Set<Role> roles, MethodDescriptor<?, ?>... methods) {
        for (MethodDescriptor<?, ?> m : methods) {
            t.put(m.getFullMethodName(), roles);
        }
    }

    private static void all(Map<String, Set<Role>> t, Set<Role> roles, ServiceDescriptor service) {
        for (MethodDescriptor<?, ?> m : service.getMethods()) {
            t.put(m.getFullMethodName(), roles);
        }
    }
}
