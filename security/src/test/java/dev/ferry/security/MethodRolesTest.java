package dev.ferry.security;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Descriptors;
import dev.ferry.v1.MigrationServiceGrpc;
import dev.ferry.v1.PageTransferServiceGrpc;
import dev.ferry.v1.PostcopyPagerServiceGrpc;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

class MethodRolesTest {
    private static final MethodRoles TABLE = MethodRoles.ferry();

    /** Every RPC of every ferry.v1 service, read from the proto files themselves. */
    static List<String> ferryMethods() {
        List<String> all = new ArrayList<>();
        for (Descriptors.FileDescriptor f : List.of(dev.ferry.v1.VmServiceProto.getDescriptor(),
                dev.ferry.v1.MigrationServiceProto.getDescriptor(), dev.ferry.v1.PageTransferServiceProto.getDescriptor(),
                dev.ferry.v1.PostcopyPagerServiceProto.getDescriptor())) {
            for (Descriptors.ServiceDescriptor s : f.getServices()) {
                for (Descriptors.MethodDescriptor m : s.getMethods()) {
                    all.add(s.getFullName() + "/" + m.getName());
                }
            }
        }
        return all;
    }

    @Test
    void everyFerryMethodIsInTheTable() {
        List<String> methods = ferryMethods();
        assertTrue(methods.size() >= 23, methods.toString());
        for (String m : methods) {
            assertTrue(TABLE.rolesFor(m).isPresent(), m + " is missing from MethodRoles");
        }
    }

    @Test
    void agentToAgentCallsAreForAgentsOnly() {
        for (String m : List.of("NegotiateMigration", "TransferDeviceState", "CompleteIncomingMigration",
                "CompleteIncomingPostcopy", "ResumeIncomingMigration", "AbortIncomingMigration")) {
            assertEquals(Set.of(Role.AGENT), TABLE.rolesFor(MigrationServiceGrpc.SERVICE_NAME + "/" + m).orElseThrow(), m);
        }
        assertEquals(Set.of(Role.AGENT), TABLE.rolesFor(PageTransferServiceGrpc.getStreamPagesMethod().getFullMethodName())
                .orElseThrow());
        PostcopyPagerServiceGrpc.getServiceDescriptor().getMethods().forEach(m ->
                assertEquals(Set.of(Role.AGENT), TABLE.rolesFor(m.getFullMethodName()).orElseThrow()));
    }

    @Test
    void publicCallsAreForControllersAndOperatorsNotAgents() {
        for (String m : List.of("MigrationService/CreateMigration", "MigrationService/GetMigration",
                "MigrationService/ListMigrations", "MigrationService/CancelMigration", "MigrationService/WatchMigration",
                "MigrationService/SwitchToPostcopy", "MigrationService/ResumeMigration", "VmService/CreateVm",
                "VmService/DeleteVm", "VmService/CheckVmMemory")) {
            assertEquals(EnumSet.of(Role.CONTROLLER, Role.OPERATOR), TABLE.rolesFor("ferry.v1." + m).orElseThrow(), m);
        }
    }

    @Test
    void unknownMethodsAreNotListed() {
        assertTrue(TABLE.rolesFor("ferry.v1.MigrationService/Nope").isEmpty());
        assertTrue(TABLE.rolesFor("grpc.health.v1.Health/Check").isPresent());
    }
}
