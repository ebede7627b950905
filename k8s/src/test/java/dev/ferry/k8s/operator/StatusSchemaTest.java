package dev.ferry.k8s.operator;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.google.protobuf.Duration;
import dev.ferry.k8s.apiserver.StructuralSchema;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationProgress;
import dev.ferry.v1.MigrationStatistics;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Whatever the operator writes to .status survives the API server's pruning: every field is declared. */
class StatusSchemaTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    private static void assertSurvivesPruning(Map<String, Object> status) throws Exception {
        ObjectNode o = JSON.createObjectNode();
        o.set("status", JSON.valueToTree(status));
        ObjectNode before = o.deepCopy();
        StructuralSchema.ofCrd(Path.of("manifests/crd-virtualmachinemigration.yaml")).pruneObject(o);
        assertEquals(before, o, "a field the operator writes is not declared in the CRD's status schema");
    }

    @Test
    void aFullStatusIsDeclared() throws Exception {
        Migration m = Migration.newBuilder().setName("migrations/x").setPhase(Migration.Phase.FAILED)
                .setProgress(MigrationProgress.newBuilder().setRound(3).setBytesSent(10).setBytesRemaining(5))
                .setStatistics(MigrationStatistics.newBuilder().setDowntime(Duration.newBuilder().setNanos(5_000_000))
                        .setGuestPause(Duration.newBuilder().setNanos(6_000_000)).setMemoryVerified(true))
                .setError(com.google.rpc.Status.newBuilder().setCode(io.grpc.Status.Code.UNAVAILABLE.value())
                        .setMessage("why").addDetails(com.google.protobuf.Any.pack(com.google.rpc.ErrorInfo.newBuilder()
                                .setDomain("ferry.dev").setReason("PRECOPY_ROUND").build()))).build();
        Map<String, Object> status = VirtualMachineMigrations.status("node-a", m);
        assertEquals("UNAVAILABLE", status.get("errorCode"));
        assertEquals("PRECOPY_ROUND", status.get("failedStep"));
        assertEquals(true, status.get("retryable"));
        assertEquals("UNAVAILABLE in PRECOPY_ROUND (retryable): why", status.get("message"));
        assertSurvivesPruning(status);
    }

    @Test
    void aFailureStatusIsDeclared() throws Exception {
        assertSurvivesPruning(VirtualMachineMigrations.failed("no agent"));
    }

    @Test
    void conditionsPolicyAndObservedGenerationAreDeclared() throws Exception {
        Map<String, Object> s = new java.util.LinkedHashMap<>(VirtualMachineMigrations.failed("refused"));
        s.put("phase", VirtualMachineMigrations.PENDING);
        s.put("migrationPolicy", "gold");
        s.put("observedGeneration", 3L);
        s.put("conditions", Conditions.merge(null, Conditions.forPhase("PENDING", "NodeLimitReached", "waiting"), 3L,
                java.time.Instant.now()));
        assertSurvivesPruning(s);
    }
}
