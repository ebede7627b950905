package dev.ferry.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Iterator;
import java.util.Map;

/** Prints a command's summary: aligned key/value lines for people, or one JSON line for programs. */
final class Output {
    static final ObjectMapper JSON = new ObjectMapper();

    private Output() {}

    static ObjectNode object() {
        return JSON.createObjectNode();
    }

    static void print(ObjectNode o, boolean json) throws Exception {
        if (json) {
            System.out.println(JSON.writeValueAsString(o));
            return;
        }
        int width = 0;
        for (Iterator<String> it = o.fieldNames(); it.hasNext(); ) {
            width = Math.max(width, it.next().length());
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = o.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            System.out.printf("%-" + width + "s  %s%n", e.getKey(), e.getValue().isTextual() ? e.getValue().asText() : e.getValue());
        }
    }
}
