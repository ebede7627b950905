package dev.ferry.state;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.ferry.state.test.VmState;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class SectionSchemaTest {

    private static SectionSchema.Builder<VmState> vm() {
        return SectionSchema.builder("kvm.vm", VmState.getDefaultInstance()).phase(RestorePhase.VM);
    }

    @Test
    void defaults() {
        SectionSchema<VmState> s = vm().build();
        assertEquals("kvm.vm", s.name());
        assertEquals(1, s.version());
        assertEquals(1, s.minReadableVersion());
        assertEquals(1, s.minReaderVersion());
        assertEquals(RestorePhase.VM, s.phase());
        assertTrue(s.required());
        assertSame(VmState.getDefaultInstance(), s.defaultInstance());
    }

    @Test
    void defaultInstanceIsNormalised() {
        SectionSchema<VmState> s = SectionSchema.builder("kvm.vm", VmState.newBuilder().setClockNs(5).build())
                .phase(RestorePhase.VM).build();
        assertSame(VmState.getDefaultInstance(), s.defaultInstance());
    }

    @Test
    void minReadableVersionDerivedFromTheUpgradeChain() {
        SectionSchema<VmState> s = vm().version(4).upgrade(2, m -> m).upgrade(3, m -> m).build();
        assertEquals(2, s.minReadableVersion());
        assertEquals(4, s.minReaderVersion());
    }

    @Test
    void builderRefusesInconsistentDefinitions() {
        assertThrows(IllegalArgumentException.class,
                () -> SectionSchema.builder("kvm.vm", VmState.getDefaultInstance()).build(), "phase unset");
        assertThrows(IllegalArgumentException.class, () -> vm().version(0).build());
        assertThrows(IllegalArgumentException.class, () -> vm().version(2).minReaderVersion(3).build());
        assertThrows(IllegalArgumentException.class, () -> vm().version(2).minReaderVersion(0).build());
        assertThrows(IllegalArgumentException.class, () -> vm().version(3).minReadableVersion(1).build(),
                "no upgrade steps from 1 and 2");
        assertThrows(IllegalArgumentException.class, () -> vm().version(3).upgrade(3, m -> m).build(),
                "step from the current version");
        assertThrows(IllegalArgumentException.class,
                () -> vm().version(3).upgrade(1, m -> m).upgrade(2, m -> m).minReadableVersion(2).build(),
                "unreachable step from 1");
        assertThrows(IllegalArgumentException.class, () -> vm().upgrade(1, m -> m).upgrade(1, m -> m));
        assertThrows(IllegalArgumentException.class,
                () -> SectionSchema.builder("bad name", VmState.getDefaultInstance()));
        assertThrows(IllegalArgumentException.class, () -> SectionSchema.builder("", VmState.getDefaultInstance()));
    }

    /** The version rule of the README, for a reader with C = 3, O = 2. */
    @ParameterizedTest(name = "W={0} R={1} -> {2}")
    @CsvSource({
            "1, 1, false",  // older than O
            "2, 1, true",   // O <= W <= C: upgrade 2 -> 3
            "2, 2, true",
            "3, 1, true",
            "3, 3, true",   // current
            "4, 3, true",   // newer writer, R <= C: additive
            "4, 2, true",
            "9, 3, true",
            "4, 4, false",  // newer writer that requires a newer reader
            "9, 5, false",
    })
    void versionRule(int w, int r, boolean readable) {
        SectionSchema<VmState> s = vm().version(3).upgrade(2, m -> m).build();
        assertEquals(2, s.minReadableVersion());
        assertEquals(readable, s.canRead(w, r));
        Section section = new Section("kvm.vm", "", w, r, true, ByteString.EMPTY);
        if (readable) {
            assertDoesNotThrowState(() -> s.decode(section));
        } else {
            StateException e = assertThrows(StateException.class, () -> s.decode(section));
            String m = e.getMessage();
            assertTrue(m.startsWith("section kvm.vm: written at version " + w + " for readers of version >= " + r),
                    m);
            assertTrue(m.contains("schema is at version 3 and reads versions 2 to 3"), m);
            assertEquals("kvm.vm", e.section().orElseThrow());
        }
    }

    @Test
    void upgradeStepsRunInOrderFromTheWrittenVersion() throws StateException {
        SectionSchema<VmState> s = vm().version(4)
                .upgrade(1, m -> m.toBuilder().setClockNs(m.getClockNs() * 10 + 2).build())
                .upgrade(2, m -> m.toBuilder().setClockNs(m.getClockNs() * 10 + 3).build())
                .upgrade(3, m -> m.toBuilder().setClockNs(m.getClockNs() * 10 + 4).build())
                .build();
        ByteString one = VmState.newBuilder().setClockNs(1).build().toByteString();
        assertEquals(1234, s.decode(new Section("kvm.vm", "", 1, 1, true, one)).getClockNs());
        assertEquals(134, s.decode(new Section("kvm.vm", "", 2, 1, true, one)).getClockNs());
        assertEquals(14, s.decode(new Section("kvm.vm", "", 3, 1, true, one)).getClockNs());
        assertEquals(1, s.decode(new Section("kvm.vm", "", 4, 4, true, one)).getClockNs());
    }

    @Test
    void failingUpgradeStepIsAStateException() {
        SectionSchema<VmState> s = vm().version(2).upgrade(1, m -> {
            throw new IllegalStateException("boom");
        }).build();
        StateException e = assertThrows(StateException.class,
                () -> s.decode(new Section("kvm.vm", "", 1, 1, true, ByteString.EMPTY)));
        assertTrue(e.getMessage().contains("upgrade step from version 1 to 2 failed"), e.getMessage());
        SectionSchema<VmState> nul = vm().version(2).upgrade(1, m -> null).build();
        assertThrows(StateException.class, () -> nul.decode(new Section("kvm.vm", "", 1, 1, true, ByteString.EMPTY)));
    }

    @Test
    void unparsablePayloadNamesTheSectionAndType() {
        StateException e = assertThrows(StateException.class, () -> vm().build().decode(
                new Section("kvm.vm", "", 1, 1, true, ByteString.copyFrom(new byte[] {(byte) 0x08}))));
        assertTrue(e.getMessage().startsWith("section kvm.vm: payload (1 bytes, version 1) is not a valid"
                + " ferry.state.test.VmState"), e.getMessage());
    }

    @Test
    void encodeProducesACurrentVersionSection() throws StateException {
        SectionSchema<VmState> s = vm().version(3).minReaderVersion(2).upgrade(2, m -> m).required(false).build();
        VmState state = VmState.newBuilder().setClockNs(77).build();
        Section section = s.encode("", state);
        assertEquals(new Section("kvm.vm", "", 3, 2, false, state.toByteString()), section);
        assertEquals(state, s.decode(section));
        assertFalse(s.canRead(1, 1));
    }

    private interface StateCall {
        void run() throws StateException;
    }

    private static void assertDoesNotThrowState(StateCall call) {
        try {
            call.run();
        } catch (StateException e) {
            throw new AssertionError("unexpected: " + e.getMessage(), e);
        }
    }
}
