package dev.ferry.state;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.ferry.state.test.v1.UartState;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * State files written by an old build (section version 1 of "test.uart") must keep loading in later builds.
 *
 * <p>The files in src/test/resources/golden/ were written once by {@link #regenerate()} with the frozen version-1
 * schema (src/test/proto/ferry/state/test/v1/uart.proto). They are never rewritten unless the envelope format itself
 * changes on purpose (and then old files need a new reader, not new golden files). To regenerate:
 * <pre>
 *   cd /work/main &amp;&amp; mvn -q -pl state-serializers test -Dtest=GoldenFilesTest#regenerate -Dferry.golden.regenerate=true
 * </pre>
 */
class GoldenFilesTest {
    static final String BIN = "golden/uart-v1.bin";
    static final String JSON = "golden/uart-v1.json";

    static final long TX_TOTAL = 0xffff_ffff_ffff_fff0L; // above 2^53: must survive JSON exactly
    static final ByteString FIFO = ByteString.copyFrom(new byte[] {'h', 'i', 0, (byte) 0xff});

    /** What the version-1 build saved: two UARTs and an optional device this build does not know. */
    static SectionSet goldenV1() {
        UartState com1 = UartState.newBuilder().setIer(0x05).setLcr(0x03).setTxBytesTotal(TX_TOTAL)
                .setRxFifo(FIFO).setScratch(0x5a).setRxTimeout(2500).build();
        UartState com2 = UartState.newBuilder().setLcr(0x1b).setRxTimeout(40).build();
        return SectionSet.of(
                TestSchemas.UART_V1.encode("com1", com1),
                TestSchemas.UART_V1.encode("com2", com2),
                new Section("test.retired-device", "", 4, 2, false, ByteString.copyFromUtf8("opaque")));
    }

    /** Writes the golden files. Run once (see the class comment); disabled otherwise. */
    @Test
    @EnabledIfSystemProperty(named = "ferry.golden.regenerate", matches = "true")
    void regenerate() throws IOException {
        Path dir = Path.of(System.getProperty("basedir", "."), "src/test/resources/golden");
        Files.createDirectories(dir);
        Files.write(dir.resolve("uart-v1.bin"), StateCodec.encode(goldenV1()));
        Files.writeString(dir.resolve("uart-v1.json"), StateJson.toJson(goldenV1(), List.of(TestSchemas.UART_V1)));
    }

    static byte[] resource(String name) {
        try (InputStream in = GoldenFilesTest.class.getClassLoader().getResourceAsStream(name)) {
            if (in == null) {
                throw new IllegalStateException(name + " missing from the test classpath; see GoldenFilesTest");
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The envelope, the stream layout and the JSON form are unchanged: today's build writes the same bytes. */
    @Test
    void formatsAreStable() throws StateException {
        assertArrayEquals(resource(BIN), StateCodec.encode(goldenV1()));
        assertEquals(new String(resource(JSON), StandardCharsets.UTF_8),
                StateJson.toJson(goldenV1(), List.of(TestSchemas.UART_V1)));
        assertEquals(goldenV1(), StateCodec.decode(resource(BIN)));
        assertEquals(goldenV1(), StateJson.fromJson(new String(resource(JSON), StandardCharsets.UTF_8),
                List.of(TestSchemas.UART_V1)));
    }

    @Test
    void jsonIsReadable() {
        String json = new String(resource(JSON), StandardCharsets.UTF_8);
        assertTrue(json.contains("\"txBytesTotal\": \"18446744073709551600\""), json);
        assertTrue(json.contains("\"rxFifo\": \"aGkA/w==\""), json);
        assertTrue(json.contains("\"payload\": \"b3BhcXVl\""), json);
    }

    @Test
    void version2LoadsVersion1Binary() throws StateException {
        assertVersion2Values(StateCodec.decode(resource(BIN)), true);
    }

    @Test
    void version2LoadsVersion1Json() throws StateException {
        SectionSet set = StateJson.fromJson(new String(resource(JSON), StandardCharsets.UTF_8),
                List.of(TestSchemas.UART_V2));
        assertVersion2Values(set, false);
    }

    private static void assertVersion2Values(SectionSet set, boolean binary) throws StateException {
        List<String> journal = Recording.journal();
        var com1 = new Recording<>(TestSchemas.UART_V2, "com1",
                dev.ferry.state.test.v2.UartState.getDefaultInstance(), journal);
        var com2 = new Recording<>(TestSchemas.UART_V2, "com2",
                dev.ferry.state.test.v2.UartState.getDefaultInstance(), journal);
        StateRegistry registry = new StateRegistry();
        registry.register(com1);
        registry.register(com2);
        registry.restore(set); // the unknown optional "test.retired-device" is skipped

        assertEquals(List.of("restore test.uart/com1", "restore test.uart/com2"), journal);
        var s = com1.state();
        assertEquals(0x05, s.getInterruptEnable(), "renamed field keeps its value (same number, same json_name)");
        assertEquals(0x03, s.getLcr());
        assertEquals(TX_TOTAL, s.getTxBytesTotal());
        assertEquals(FIFO, s.getRxFifo());
        assertEquals(2_500_000L, s.getRxTimeout(), "upgrade step 1 -> 2: microseconds to nanoseconds");
        assertFalse(s.getLoopback(), "added field absent in version 1: default");
        // The removed field: binary keeps it as an unknown field (number 5), JSON drops it.
        assertEquals(binary, s.getUnknownFields().hasField(5));
        assertEquals(40_000L, com2.state().getRxTimeout());
        assertEquals(0x1b, com2.state().getLcr());
    }

    /** Two builds later the chain 1 -> 2 -> 3 still applies. */
    @Test
    void version3LoadsVersion1() throws StateException {
        for (SectionSet set : List.of(StateCodec.decode(resource(BIN)), StateJson.fromJson(
                new String(resource(JSON), StandardCharsets.UTF_8), List.of(TestSchemas.UART_V3)))) {
            var s = TestSchemas.UART_V3.decode(set.get(TestSchemas.UART, "com1").orElseThrow());
            assertEquals(2_500_000L, s.getRxTimeout());
            assertEquals(0x08, s.getMcr());
            assertEquals(TX_TOTAL, s.getTxBytesTotal());
        }
    }
}
