package dev.ferry.k8s.apiserver;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * A CRD's structural schema and the pruning a real API server applies to every object it stores:
 * fields the schema does not declare are dropped, unless a node says
 * {@code x-kubernetes-preserve-unknown-fields}. The emulated API server in the client library keeps
 * everything, so without this a test passes on fields a cluster would throw away.
 */
public final class StructuralSchema {
    private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
    private final JsonNode root;

    private StructuralSchema(JsonNode root) {
        this.root = root;
    }

    /** The openAPIV3Schema of the CRD's storage version. */
    public static StructuralSchema ofCrd(Path crdYaml) throws IOException {
        JsonNode crd = YAML.readTree(crdYaml.toFile());
        for (JsonNode v : crd.path("spec").path("versions")) {
            if (v.path("storage").asBoolean()) {
                return new StructuralSchema(v.path("schema").path("openAPIV3Schema"));
            }
        }
        throw new IllegalArgumentException(crdYaml + " has no storage version with a schema");
    }

    /** Prunes a whole object in place; apiVersion, kind and metadata are the API server's own. */
    public ObjectNode pruneObject(ObjectNode object) {
        List<String> drop = new ArrayList<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = object.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String k = e.getKey();
            if (k.equals("apiVersion") || k.equals("kind") || k.equals("metadata")) {
                continue;
            }
            JsonNode s = root.path("properties").get(k);
            if (s == null) {
                drop.add(k);
            } else {
                object.set(k, prune(e.getValue(), s));
            }
        }
        object.remove(drop);
        return object;
    }

    /** The schema at a JSON pointer ("/status/phase"), or null where nothing is declared. */
    public JsonNode schemaAt(String pointer) {
        JsonNode s = root;
        String[] parts = pointer.isEmpty() ? new String[0] : pointer.substring(1).split("/");
        for (int i = 0; i < parts.length; i++) {
            String p = parts[i].replace("~1", "/").replace("~0", "~");
            if (i == 0 && (p.equals("metadata") || p.equals("apiVersion") || p.equals("kind"))) {
                return PRESERVE;
            }
            if (s.path("x-kubernetes-preserve-unknown-fields").asBoolean() && !s.has("properties")) {
                return PRESERVE;
            }
            if (s.has("properties")) {
                s = s.path("properties").get(p);
            } else if (s.has("additionalProperties") && s.get("additionalProperties").isObject()) {
                s = s.get("additionalProperties");
            } else if (s.has("items")) {
                s = s.get("items");
            } else {
                return null;
            }
            if (s == null) {
                return null;
            }
        }
        return s;
    }

    private static final JsonNode PRESERVE = YAML.createObjectNode().put("x-kubernetes-preserve-unknown-fields", true);

    /** Prunes a value against its schema node; returns the (same or replaced) value. */
    public static JsonNode prune(JsonNode value, JsonNode schema) {
        if (value instanceof ObjectNode o) {
            JsonNode props = schema.get("properties");
            JsonNode additional = schema.get("additionalProperties");
            boolean preserve = schema.path("x-kubernetes-preserve-unknown-fields").asBoolean();
            List<String> drop = new ArrayList<>();
            for (Iterator<Map.Entry<String, JsonNode>> it = o.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                JsonNode s = props == null ? null : props.get(e.getKey());
                if (s == null && additional != null && additional.isObject()) {
                    s = additional;
                }
                if (s != null) {
                    o.set(e.getKey(), prune(e.getValue(), s));
                } else if (!preserve) {
                    drop.add(e.getKey());
                }
            }
            o.remove(drop);
        } else if (value instanceof ArrayNode a && schema.has("items")) {
            for (int i = 0; i < a.size(); i++) {
                a.set(i, prune(a.get(i), schema.get("items")));
            }
        }
        return value;
    }
}
