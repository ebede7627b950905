package dev.ferry.state;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.ferry.state.test.v2.UartState;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class StateJsonTest {
    private static final List<SectionSchema<?>> SCHEMAS = List.of(TestSchemas.UART_V2);
    private static final UartState UART = UartState.newBuilder().setInterruptEnable(1)
            .setTxBytesTotal(0x8000_0000_0000_0001L).setRxFifo(ByteString.copyFromUtf8("ok")).setLoopback(true).build();

    private static final String EXPECTED = """
            {
              "formatVersion": 1,
              "sections": [
                {
                  "name": "test.uart",
                  "instanceId": "com1",
                  "version": 2,
                  "minReaderVersion": 2,
                  "required": true,
                  "state": {
                    "ier": 1,
                    "lcr": 0,
                    "txBytesTotal": "9223372036854775809",
                    "rxFifo": "b2s=",
                    "rxTimeout": "0",
                    "loopback": true
                  }
                },
                {
                  "name": "device.mystery",
                  "instanceId": "",
                  "version": 3,
                  "minReaderVersion": 1,
                  "required": false,
                  "payload": "AAEC/w=="
                }
              ]
            }
            """;

    private static SectionSet sample() {
        return SectionSet.of(TestSchemas.UART_V2.encode("com1", UART),
                new Section("device.mystery", "", 3, 1, false, ByteString.copyFrom(new byte[] {0, 1, 2, -1})));
    }

    @Test
    void rendersTypedAndBase64Sections() throws StateException {
        assertEquals(EXPECTED, StateJson.toJson(sample(), SCHEMAS));
        assertEquals(sample(), StateJson.fromJson(EXPECTED, SCHEMAS));
    }

    @Test
    void payloadThatDoesNotParseIsShownAsBase64() throws StateException {
        SectionSet set = SectionSet.of(new Section("test.uart", "com1", 2, 2, true,
                ByteString.copyFrom(new byte[] {(byte) 0x80})));
        String json = StateJson.toJson(set, SCHEMAS);
        assertTrue(json.contains("\"payload\": \"gA==\""), json);
        assertEquals(set, StateJson.fromJson(json, SCHEMAS));
    }

    @Test
    void handEditedValuesAreAccepted() throws StateException {
        String edited = EXPECTED.replace("\"txBytesTotal\": \"9223372036854775809\"", "\"txBytesTotal\": 18446744073709551615")
                .replace("\"rxTimeout\": \"0\",", "");
        UartState s = TestSchemas.UART_V2.decode(StateJson.fromJson(edited, SCHEMAS).get("test.uart", "com1")
                .orElseThrow());
        assertEquals(-1L, s.getTxBytesTotal());
        assertEquals(0, s.getRxTimeout());
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', textBlock = """
            malformed            | "formatVersion": 1,      | "formatVersion": 1,,      | state JSON is malformed:
            unknown top key      | "formatVersion": 1,      | "formatVersion": 1, "x": 0, | state JSON: unknown key "x"
            format version       | "formatVersion": 1,      | "formatVersion": 2,       | state stream format version 2 is not supported
            version as string    | "version": 2,            | "version": "2",           | state JSON: sections[0] (test.uart/com1): "version" must be a non-negative integer, got "2"
            unknown key          | "required": false,       | "junk": 1,                | state JSON: sections[1] (device.mystery): unknown key "junk"
            missing key          | "minReaderVersion": 1,   | ''                        | state JSON: sections[1] (device.mystery): missing key "minReaderVersion"
            duplicate key        | "instanceId": "com1",    | "instanceId": "com1", "instanceId": "com2", | state JSON is malformed: Duplicate field 'instanceId'
            both forms           | "required": false,       | "required": false, "state": {}, | section device.mystery: JSON must have exactly one of "state" (typed) and "payload" (base64)
            bad base64           | "AAEC/w=="               | "AAEC/w=*"                | section device.mystery: "payload" is not valid base64
            unknown field        | "loopback": true         | "loopback": true, "lopback": true | section test.uart/com1: "state" does not fit ferry.state.test.v2.UartState (schema version 2):
            wrong field type     | "ier": 1,                | "ier": "one",             | section test.uart/com1: "state" does not fit
            invalid version      | "minReaderVersion": 2,   | "minReaderVersion": 3,    | section test.uart/com1: invalid minReaderVersion 3 (must be between 1 and the section version 2)
            duplicate section    | "instanceId": "",        | "instanceId": "", "name": "test.uart", "instanceId": "com1", | state JSON is malformed: Duplicate field 'name'
            """)
    void refusesInvalidJson(String what, String find, String replace, String expectedPrefix) {
        String json = EXPECTED.replaceFirst(java.util.regex.Pattern.quote(find),
                java.util.regex.Matcher.quoteReplacement(replace));
        assertTrue(!json.equals(EXPECTED), "test case did not change the JSON: " + what);
        StateException e = assertThrows(StateException.class, () -> StateJson.fromJson(json, SCHEMAS), what);
        assertTrue(e.getMessage().startsWith(expectedPrefix), () -> what + ": got " + e.getMessage());
    }

    @Test
    void typedStateNeedsASchema() {
        StateException e = assertThrows(StateException.class, () -> StateJson.fromJson(EXPECTED, List.of()));
        assertEquals("section test.uart/com1: has typed \"state\" but no schema for test.uart is known here, so it"
                + " cannot be converted to bytes", e.getMessage());
    }

    @Test
    void duplicateSectionsAreRefused() {
        String json = """
                {"formatVersion": 1, "sections": [
                  {"name": "a", "instanceId": "", "version": 1, "minReaderVersion": 1, "required": true, "payload": ""},
                  {"name": "a", "instanceId": "", "version": 1, "minReaderVersion": 1, "required": true, "payload": ""}
                ]}""";
        StateException e = assertThrows(StateException.class, () -> StateJson.fromJson(json, List.of()));
        assertEquals("section a: appears more than once in the stream", e.getMessage());
    }

    @Test
    void refusesNonObjectsAndTrailingGarbage() {
        assertThrows(StateException.class, () -> StateJson.fromJson("[]", List.of()));
        assertThrows(StateException.class, () -> StateJson.fromJson("", List.of()));
        assertThrows(StateException.class, () -> StateJson.fromJson(EXPECTED + "{}", SCHEMAS));
        assertThrows(StateException.class, () -> StateJson.fromJson("{\"formatVersion\": 1, \"sections\": {}}",
                List.of()));
        assertThrows(StateException.class, () -> StateJson.fromJson("{\"formatVersion\": 1, \"sections\": [1]}",
                List.of()));
    }
}
