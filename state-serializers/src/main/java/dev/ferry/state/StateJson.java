package dev.ferry.state;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectWriter;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.protobuf.util.JsonFormat;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The human-readable form of a state stream: the same data as {@link StateCodec}, as JSON, for debugging and
 * {@code ferry state show/edit}. Both directions; {@code fromJson(toJson(s))} equals {@code s} exactly, and
 * {@code toJson} is deterministic.
 *
 * <pre>{@code
 * {
 *   "formatVersion": 1,
 *   "sections": [
 *     {
 *       "name": "device.serial",
 *       "instanceId": "com1",
 *       "version": 1,
 *       "minReaderVersion": 1,
 *       "required": true,
 *       "state": { "ier": 5, "txBytesTotal": "18446744073709551600", "rxFifo": "aGVsbG8=" }
 *     },
 *     { "name": "device.unknown", ..., "payload": "CAEQAg==" }
 *   ]
 * }
 * }</pre>
 * Header keys are the protobuf JSON names of {@code ferry.state.v1.StateStream} and {@code Section}. A section's
 * payload appears either as {@code "state"}: the payload message in protobuf JSON (its fields' {@code json_name}s,
 * 64-bit integers as strings, bytes in base64, every field printed even when default), or as {@code "payload"}: the
 * raw bytes in base64. {@code toJson} uses {@code "state"} when a schema for the section is given and the typed form
 * reproduces the payload bytes exactly, and {@code "payload"} otherwise (unknown section, unparsable payload,
 * fields the schema does not know), so nothing is ever lost.
 *
 * <p>{@code fromJson} is strict about the envelope (every header key present, no unknown keys, no duplicate keys)
 * and about {@code "state"} fields of a section at its schema's current version. For a section older than its
 * schema, fields the schema no longer has (removed, reserved) are dropped; for a section newer than its schema,
 * unknown fields are refused, because they could not be carried over: convert it with a newer Ferry instead.
 */
public final class StateJson {
    private static final JsonMapper MAPPER = JsonMapper.builder(JsonFactory.builder()
                    // Base64 of the largest payload StateCodec accepts must fit in one JSON string.
                    .streamReadConstraints(StreamReadConstraints.builder()
                            .maxStringLength(StateCodec.MAX_PAYLOAD_BYTES / 3 * 4 + 1024)
                            .maxNestingDepth(200)
                            .build())
                    .build())
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            // Floating-point numbers stay doubles (not BigDecimal, which has no -0.0); integers of any size stay exact.
            .build();
    private static final ObjectWriter WRITER = MAPPER.writer(new DefaultPrettyPrinter(Separators.createDefaultInstance()
            .withObjectFieldValueSpacing(Separators.Spacing.AFTER)
            .withObjectEmptySeparator("")
            .withArrayEmptySeparator(""))
            .withObjectIndenter(new DefaultIndenter("  ", "\n"))
            .withArrayIndenter(new DefaultIndenter("  ", "\n")));

    private static final JsonFormat.Printer PRINTER = JsonFormat.printer().includingDefaultValueFields().sortingMapKeys();
    private static final JsonFormat.Parser STRICT = JsonFormat.parser();
    private static final JsonFormat.Parser LENIENT = JsonFormat.parser().ignoringUnknownFields();

    private static final Set<String> SECTION_KEYS =
            Set.of("name", "instanceId", "version", "minReaderVersion", "required", "state", "payload");

    private StateJson() {
    }

    /**
     * Renders a section set as pretty-printed JSON (2-space indent, {@code \n} line ends, final newline).
     *
     * @param schemas schemas used to render payloads as typed JSON; sections without one are rendered as base64
     * @throws IllegalArgumentException if two different schemas in {@code schemas} share a name
     */
    public static String toJson(SectionSet set, Collection<SectionSchema<?>> schemas) {
        Map<String, SectionSchema<?>> byName = Schemas.byName(schemas);
        ObjectNode root = MAPPER.createObjectNode();
        root.put("formatVersion", StateCodec.FORMAT_VERSION);
        ArrayNode list = root.putArray("sections");
        for (Section s : set) {
            ObjectNode n = list.addObject();
            n.put("name", s.name());
            n.put("instanceId", s.instanceId());
            n.put("version", s.version());
            n.put("minReaderVersion", s.minReaderVersion());
            n.put("required", s.required());
            JsonNode typed = typed(byName.get(s.name()), s.payload());
            if (typed != null) {
                n.set("state", typed);
            } else {
                n.put("payload", Base64.getEncoder().encodeToString(s.payloadBytes()));
            }
        }
        try {
            return WRITER.writeValueAsString(root) + "\n";
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("writing a JSON tree to a string cannot fail", e);
        }
    }

    /** The payload as typed JSON if that form converts back to exactly the same bytes, else null. */
    private static JsonNode typed(SectionSchema<?> schema, ByteString payload) {
        if (schema == null) {
            return null;
        }
        try {
            Message message = schema.parser().parseFrom(payload);
            JsonNode tree = MAPPER.readTree(PRINTER.print(message));
            Message.Builder back = schema.defaultInstance().newBuilderForType();
            STRICT.merge(WRITER.writeValueAsString(tree), back);
            return Payloads.serialize(back.build()).equals(payload) ? tree : null;
        } catch (InvalidProtocolBufferException | JsonProcessingException | RuntimeException e) {
            // Not representable as typed JSON (JsonFormat also throws unchecked exceptions on odd input):
            // fall back to base64, which is always exact. toJson must work on any stream, damaged ones included.
            return null;
        }
    }

    /**
     * Parses the JSON form back into a section set, verifying it as {@link StateCodec#decode} does.
     *
     * @param schemas schemas for converting {@code "state"} payloads back to bytes
     * @throws StateException if the JSON is malformed, does not have the expected structure, names a section with
     *                        typed state but no schema, has typed state that does not fit its schema, or has invalid
     *                        or duplicate section headers
     * @throws IllegalArgumentException if two different schemas in {@code schemas} share a name
     */
    public static SectionSet fromJson(String json, Collection<SectionSchema<?>> schemas) throws StateException {
        Map<String, SectionSchema<?>> byName = Schemas.byName(schemas);
        JsonNode root;
        try {
            root = MAPPER.readTree(json);
        } catch (JsonProcessingException e) {
            throw new StateException("state JSON is malformed: " + e.getOriginalMessage()
                    + (e.getLocation() == null ? "" : " (line " + e.getLocation().getLineNr() + ", column "
                    + e.getLocation().getColumnNr() + ")"), e);
        }
        if (root == null || !root.isObject()) {
            throw new StateException("state JSON must be an object with \"formatVersion\" and \"sections\"");
        }
        checkKeys(root, Set.of("formatVersion", "sections"), Set.of("formatVersion", "sections"), "state JSON");
        StateCodec.checkFormatVersion(intValue(root.get("formatVersion"), "state JSON: \"formatVersion\""));
        JsonNode list = root.get("sections");
        if (!list.isArray()) {
            throw new StateException("state JSON: \"sections\" must be an array");
        }
        List<Section> sections = new ArrayList<>(list.size());
        for (int i = 0; i < list.size(); i++) {
            sections.add(section(list.get(i), i, byName));
        }
        return SectionSet.validated(sections);
    }

    private static Section section(JsonNode n, int index, Map<String, SectionSchema<?>> byName)
            throws StateException {
        String where = "state JSON: sections[" + index + "]";
        if (!n.isObject()) {
            throw new StateException(where + " must be an object");
        }
        if (n.get("name") != null && n.get("name").isTextual()) {
            where += " (" + Section.label(n.get("name").asText(),
                    n.get("instanceId") != null && n.get("instanceId").isTextual() ? n.get("instanceId").asText() : "")
                    + ")";
        }
        checkKeys(n, SECTION_KEYS, Set.of("name", "instanceId", "version", "minReaderVersion", "required"), where);
        String name = text(n.get("name"), where + ": \"name\"");
        String instanceId = text(n.get("instanceId"), where + ": \"instanceId\"");
        int version = intValue(n.get("version"), where + ": \"version\"");
        int minReader = intValue(n.get("minReaderVersion"), where + ": \"minReaderVersion\"");
        if (!n.get("required").isBoolean()) {
            throw new StateException(where + ": \"required\" must be true or false");
        }
        boolean required = n.get("required").booleanValue();
        String problem = Section.problem(name, instanceId, version, minReader);
        if (problem != null) {
            throw new StateException(name, instanceId, problem);
        }
        JsonNode state = n.get("state");
        JsonNode payload = n.get("payload");
        if ((state == null) == (payload == null)) {
            throw new StateException(name, instanceId, "JSON must have exactly one of \"state\" (typed) and"
                    + " \"payload\" (base64)");
        }
        ByteString bytes;
        if (payload != null) {
            String b64 = text(payload, where + ": \"payload\"");
            try {
                bytes = ByteString.copyFrom(Base64.getDecoder().decode(b64));
            } catch (IllegalArgumentException e) {
                throw new StateException(name, instanceId, "\"payload\" is not valid base64: " + e.getMessage(), e);
            }
        } else {
            bytes = typedPayload(byName.get(name), name, instanceId, version, state);
        }
        return new Section(name, instanceId, version, minReader, required, bytes);
    }

    private static ByteString typedPayload(SectionSchema<?> schema, String name, String instanceId, int version,
                                           JsonNode state) throws StateException {
        if (schema == null) {
            throw new StateException(name, instanceId, "has typed \"state\" but no schema for " + name
                    + " is known here, so it cannot be converted to bytes");
        }
        if (!state.isObject()) {
            throw new StateException(name, instanceId, "\"state\" must be a JSON object");
        }
        String text;
        try {
            text = WRITER.writeValueAsString(state);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("writing a JSON tree to a string cannot fail", e);
        }
        Message.Builder b = schema.defaultInstance().newBuilderForType();
        try {
            STRICT.merge(text, b);
        } catch (InvalidProtocolBufferException | RuntimeException strictFailure) {
            // JsonFormat reports some malformed input as unchecked exceptions; both mean "does not fit the schema".
            String why = "\"state\" does not fit " + schema.descriptor().getFullName() + " (schema version "
                    + schema.version() + "): " + strictFailure.getMessage();
            if (version >= schema.version()) {
                throw new StateException(name, instanceId, why + (version > schema.version()
                        ? "; the section was written at version " + version + " by a newer Ferry: convert it with"
                        + " a build that knows that version" : ""), strictFailure);
            }
            // An older section may still carry fields removed since: drop them (see the README's version rules).
            b = schema.defaultInstance().newBuilderForType();
            try {
                LENIENT.merge(text, b);
            } catch (InvalidProtocolBufferException | RuntimeException e) {
                throw new StateException(name, instanceId, why, e);
            }
        }
        return Payloads.serialize(b.build());
    }

    private static void checkKeys(JsonNode n, Set<String> allowed, Set<String> required, String where)
            throws StateException {
        for (Iterator<String> it = n.fieldNames(); it.hasNext(); ) {
            String key = it.next();
            if (!allowed.contains(key)) {
                throw new StateException(where + ": unknown key \"" + key + "\" (expected " + String.join(", ",
                        allowed.stream().sorted().toList()) + ")");
            }
        }
        for (String key : required.stream().sorted().toList()) {
            if (!n.has(key)) {
                throw new StateException(where + ": missing key \"" + key + "\"");
            }
        }
    }

    private static String text(JsonNode n, String what) throws StateException {
        if (n == null || !n.isTextual()) {
            throw new StateException(what + " must be a string");
        }
        return n.textValue();
    }

    private static int intValue(JsonNode n, String what) throws StateException {
        if (n == null || !n.isIntegralNumber() || !n.canConvertToInt() || n.intValue() < 0) {
            String got = String.valueOf(n);
            throw new StateException(what + " must be a non-negative integer, got "
                    + (got.length() > 40 ? got.substring(0, 40) + "..." : got));
        }
        return n.intValue();
    }
}
