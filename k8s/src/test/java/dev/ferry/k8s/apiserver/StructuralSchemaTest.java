package dev.ferry.k8s.apiserver;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

class StructuralSchemaTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    private static StructuralSchema crd() throws Exception {
        return StructuralSchema.ofCrd(Path.of("manifests/crd-virtualmachinemigration.yaml"));
    }

    @Test
    void undeclaredFieldsAreDroppedAtEveryLevelAndDeclaredOnesKept() throws Exception {
        ObjectNode o = (ObjectNode) JSON.readTree("""
                {"apiVersion":"ferry.dev/v1alpha1","kind":"VirtualMachineMigration","metadata":{"name":"m","labels":{"a":"b"}},
                 "spec":{"vm":"vms/a","destinationNode":"n","policy":{"maxDowntime":"20ms","turbo":true},"extra":1},
                 "status":{"phase":"PRECOPY","secretNote":"x"},"junk":{}}""");
        JsonNode p = crd().pruneObject(o);
        assertEquals("vms/a", p.at("/spec/vm").asText());
        assertEquals("20ms", p.at("/spec/policy/maxDowntime").asText());
        assertTrue(p.at("/spec/policy/turbo").isMissingNode());
        assertTrue(p.at("/spec/extra").isMissingNode());
        assertTrue(p.at("/status/secretNote").isMissingNode());
        assertEquals("PRECOPY", p.at("/status/phase").asText());
        assertFalse(p.has("junk"));
        assertEquals("b", p.at("/metadata/labels/a").asText(), "metadata is the API server's own");
    }

    @Test
    void schemaLookupFollowsDeclaredPathsOnly() throws Exception {
        StructuralSchema s = crd();
        assertEquals("string", s.schemaAt("/status/phase").path("type").asText());
        assertNull(s.schemaAt("/status/notDeclared"));
        assertNull(s.schemaAt("/spec/policy/turbo"));
    }
}
