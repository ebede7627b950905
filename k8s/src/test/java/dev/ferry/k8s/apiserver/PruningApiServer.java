package dev.ferry.k8s.apiserver;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.client.NamespacedKubernetesClient;
import io.fabric8.kubernetes.client.server.mock.KubernetesCrudDispatcher;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.fabric8.mockwebserver.Context;
import io.fabric8.mockwebserver.MockWebServer;
import io.fabric8.mockwebserver.http.Buffer;
import io.fabric8.mockwebserver.http.MockResponse;
import io.fabric8.mockwebserver.http.RecordedRequest;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.HashMap;
import java.util.Map;

/**
 * The client library's API-server emulation (CRUD mode), with one thing a real API server does and the
 * emulation does not: every write to a custom resource is pruned to its CRD's structural schema
 * before it is stored or sent to watchers. Creates and updates are pruned whole; a JSON patch keeps
 * only operations on declared paths, with their values pruned; a merge patch is pruned as an object.
 */
public final class PruningApiServer implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final KubernetesMockServer server;
    private final NamespacedKubernetesClient client;

    /** @param schemas the structural schema of each custom resource, by its URL plural (e.g. "virtualmachinemigrations") */
    public PruningApiServer(Map<String, StructuralSchema> schemas) {
        server = new KubernetesMockServer(new Context(), new MockWebServer(), new HashMap<>(),
                new Pruning(schemas), false);
        server.init();
        client = server.createClient();
    }

    public NamespacedKubernetesClient client() {
        return client;
    }

    @Override
    public void close() {
        client.close();
        server.destroy();
    }

    private static final class Pruning extends KubernetesCrudDispatcher {
        private final Map<String, StructuralSchema> schemas;

        Pruning(Map<String, StructuralSchema> schemas) {
            this.schemas = schemas;
        }

        @Override
        public MockResponse dispatch(RecordedRequest request) {
            StructuralSchema schema = schemaFor(request.getPath());
            String method = request.getMethod();
            if (schema == null || request.getBody() == null || request.getBody().size() == 0
                    || !(method.equals("POST") || method.equals("PUT") || method.equals("PATCH"))) {
                return super.dispatch(request);
            }
            String body = request.getUtf8Body();
            String pruned = prune(schema, body, method, String.valueOf(request.getHeader("Content-Type")));
            return super.dispatch(new RecordedRequest(request.getRequestLine(), request.method(), request.getPath(),
                    request.getHeaders(), new Buffer(pruned.getBytes(java.nio.charset.StandardCharsets.UTF_8))));
        }

        private StructuralSchema schemaFor(String path) {
            String p = path.split("\\?")[0];
            for (Map.Entry<String, StructuralSchema> e : schemas.entrySet()) {
                if (p.contains("/" + e.getKey() + "/") || p.endsWith("/" + e.getKey())) {
                    return e.getValue();
                }
            }
            return null;
        }

        static String prune(StructuralSchema schema, String body, String method, String contentType) {
            try {
                JsonNode n = JSON.readTree(body);
                if (method.equals("PATCH") && contentType.contains("json-patch") && n instanceof ArrayNode ops) {
                    ArrayNode kept = JSON.createArrayNode();
                    for (JsonNode op : ops) {
                        String path = op.path("path").asText();
                        JsonNode s = schema.schemaAt(path);
                        String kind = op.path("op").asText();
                        if (kind.equals("add") || kind.equals("replace")) {
                            if (s == null) {
                                continue; // an undeclared field: the server would prune it from the result
                            }
                            ((ObjectNode) op).set("value", StructuralSchema.prune(op.get("value"), s));
                        }
                        kept.add(op);
                    }
                    return JSON.writeValueAsString(kept);
                }
                if (n instanceof ObjectNode o) {
                    return JSON.writeValueAsString(schema.pruneObject(o));
                }
                return body;
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
