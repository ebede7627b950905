package dev.ferry.state;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.state.test.v2.UartState;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Sections written by a newer or older build than the reader. */
class VersionSkewTest {
    private static final dev.ferry.state.test.v3.UartState V3_STATE = dev.ferry.state.test.v3.UartState.newBuilder()
            .setInterruptEnable(0x0f).setTxBytesTotal(123).setRxTimeout(9000).setLoopback(true).setMcr(0x0b).build();

    /** A version-4 writer that changed something incompatibly: readers must be at least version 4. */
    private static final SectionSchema<dev.ferry.state.test.v3.UartState> UART_V4_INCOMPATIBLE =
            SectionSchema.builder(TestSchemas.UART, dev.ferry.state.test.v3.UartState.getDefaultInstance())
                    .version(4).minReaderVersion(4).phase(RestorePhase.DEVICE)
                    .upgrade(1, s -> s).upgrade(2, s -> s).upgrade(3, s -> s).build();

    private static Recording<UartState> v2Reader(StateRegistry registry, List<String> journal) {
        Recording<UartState> uart = new Recording<>(TestSchemas.UART_V2, "com1", UartState.getDefaultInstance(),
                journal);
        registry.register(uart);
        return uart;
    }

    @Test
    void newerWriterWithUnknownFieldsLoadsWhenMinReaderVersionAllows() throws StateException {
        Section written = TestSchemas.UART_V3.encode("com1", V3_STATE);
        assertEquals(3, written.version());
        assertEquals(2, written.minReaderVersion());

        StateRegistry registry = new StateRegistry();
        Recording<UartState> uart = v2Reader(registry, Recording.journal());
        registry.restore(StateCodec.decode(StateCodec.encode(SectionSet.of(written))));

        UartState s = uart.state();
        assertEquals(0x0f, s.getInterruptEnable());
        assertEquals(123, s.getTxBytesTotal());
        assertEquals(9000, s.getRxTimeout(), "no upgrade step runs on a newer section");
        assertTrue(s.getLoopback());
        assertTrue(s.getUnknownFields().hasField(8), "the field this build does not know is kept, unused");
        // Re-saved by this version-2 build, the section is labelled version 2, so a version-3 reader runs its
        // 2 -> 3 step (which sets mcr) instead of trusting a value the version-2 build did not maintain.
        assertEquals(0x08, TestSchemas.UART_V3.decode(TestSchemas.UART_V2.encode("com1", s)).getMcr());
    }

    @Test
    void newerWriterIsRefusedWhenItRequiresANewerReader() {
        Section written = UART_V4_INCOMPATIBLE.encode("com1", V3_STATE);
        List<String> journal = Recording.journal();
        StateRegistry registry = new StateRegistry();
        v2Reader(registry, journal);

        StateException e = assertThrows(StateException.class, () -> registry.restore(SectionSet.of(written)));
        String m = e.getMessage();
        assertTrue(m.contains("section test.uart/com1: written at version 4 for readers of version >= 4, but this"
                + " build's test.uart schema is at version 2 and reads versions 1 to 2"), m);
        assertTrue(m.contains("restore with a Ferry build whose test.uart version is at least 4"), m);
        assertEquals("test.uart", e.section().orElseThrow());
        assertEquals("com1", e.instanceId().orElseThrow());
        assertEquals(List.of(), journal, "nothing restored");
    }

    @Test
    void version2SectionsAreRefusedByAVersion1Reader() {
        // Version 2 changed the meaning of rx_timeout, so it declares minReaderVersion 2 (the default).
        Section written = TestSchemas.UART_V2.encode("com1", UartState.newBuilder().setRxTimeout(5).build());
        StateException e = assertThrows(StateException.class, () -> TestSchemas.UART_V1.decode(written));
        assertEquals("section test.uart/com1: written at version 2 for readers of version >= 2, but this build's"
                + " test.uart schema is at version 1 and reads versions 1 to 1: the writer made an incompatible"
                + " change; restore with a Ferry build whose test.uart version is at least 2", e.getMessage());
    }

    @Test
    void sectionsOlderThanTheOldestReadableVersionAreRefused() {
        SectionSchema<UartState> dropsV1 = SectionSchema.builder(TestSchemas.UART, UartState.getDefaultInstance())
                .version(2).minReadableVersion(2).phase(RestorePhase.DEVICE).build();
        Section old = TestSchemas.UART_V1.encode("com2", dev.ferry.state.test.v1.UartState.getDefaultInstance());
        StateException e = assertThrows(StateException.class, () -> dropsV1.decode(old));
        assertEquals("section test.uart/com2: written at version 1 for readers of version >= 1, but this build's"
                + " test.uart schema is at version 2 and reads versions 2 to 2: version 1 is too old for this build;"
                + " restore with an older Ferry build that still reads it", e.getMessage());
    }

    @Test
    void olderWriterIsUpgradedByANewerReader() throws StateException {
        Section v2 = TestSchemas.UART_V2.encode("com1", UartState.newBuilder().setRxTimeout(7).build());
        dev.ferry.state.test.v3.UartState s = TestSchemas.UART_V3.decode(v2);
        assertEquals(7, s.getRxTimeout(), "only the 2 -> 3 step runs");
        assertEquals(0x08, s.getMcr());
    }

    @Test
    void newerWritersJsonWithFieldsTheReaderLacksIsRefusedTypedButReadableAsBase64() throws StateException {
        SectionSet set = SectionSet.of(TestSchemas.UART_V3.encode("com1", V3_STATE));
        String typed = StateJson.toJson(set, List.of(TestSchemas.UART_V3));
        StateException e = assertThrows(StateException.class,
                () -> StateJson.fromJson(typed, List.of(TestSchemas.UART_V2)));
        assertTrue(e.getMessage().startsWith("section test.uart/com1: \"state\" does not fit"
                + " ferry.state.test.v2.UartState (schema version 2): "), e.getMessage());
        assertTrue(e.getMessage().contains("mcr"), e.getMessage());
        assertTrue(e.getMessage().endsWith("the section was written at version 3 by a newer Ferry: convert it with a"
                + " build that knows that version"), e.getMessage());

        // The old build renders the newer section losslessly as base64 and reads that back exactly.
        String raw = StateJson.toJson(set, List.of(TestSchemas.UART_V2));
        assertTrue(raw.contains("\"payload\""), raw);
        assertEquals(set, StateJson.fromJson(raw, List.of(TestSchemas.UART_V2)));
    }
}
