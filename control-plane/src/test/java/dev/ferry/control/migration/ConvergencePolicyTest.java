package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Duration;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.MigrationPolicy.NoConvergenceAction;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class ConvergencePolicyTest {

    @Test
    void emptyPolicyTakesTheDocumentedDefaults() {
        ConvergencePolicy p = ConvergencePolicy.of(MigrationMode.MIGRATION_MODE_UNSPECIFIED, null);
        assertEquals(MigrationMode.PRECOPY, p.mode());
        assertEquals(java.time.Duration.ofMillis(300), p.maxDowntime());
        assertEquals(0, p.bandwidthLimitBytesPerSecond());
        assertEquals(30, p.maxRounds());
        assertFalse(p.hasTotalTimeLimit());
        assertEquals(4, p.dataStreams());
        assertEquals(NoConvergenceAction.FAIL, p.onNoConvergence());
        assertTrue(p.verifyMemory());
    }

    @Test
    void hybridDefaultsToSwitchingToPostcopy() {
        assertEquals(NoConvergenceAction.SWITCH_TO_POSTCOPY,
                ConvergencePolicy.defaults(MigrationMode.HYBRID).onNoConvergence());
        assertEquals(NoConvergenceAction.FAIL, ConvergencePolicy.defaults(MigrationMode.POSTCOPY).onNoConvergence());
    }

    @ParameterizedTest
    @EnumSource(value = MigrationMode.class, names = {"PRECOPY", "POSTCOPY", "MIGRATION_MODE_UNSPECIFIED"})
    void switchToPostcopyOnNoConvergenceIsOnlyValidForHybrid(MigrationMode mode) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ConvergencePolicy.of(mode,
                MigrationPolicy.newBuilder().setOnNoConvergence(NoConvergenceAction.SWITCH_TO_POSTCOPY).build()));
        assertTrue(e.getMessage().contains("only valid for mode HYBRID"), e.getMessage());
    }

    @Test
    void toProtoFillsEveryDefaultAndRoundTrips() {
        MigrationPolicy filled = ConvergencePolicy.defaults(MigrationMode.HYBRID).toProto();
        assertEquals(Duration.newBuilder().setNanos(300_000_000).build(), filled.getMaxDowntime());
        assertEquals(30, filled.getMaxRounds());
        assertEquals(4, filled.getDataStreams());
        assertEquals(NoConvergenceAction.SWITCH_TO_POSTCOPY, filled.getOnNoConvergence());
        assertTrue(filled.hasVerifyMemory() && filled.getVerifyMemory());
        assertFalse(filled.hasMaxTotalTime(), "no limit stays unset");
        assertEquals(MigrationPolicy.PageCompression.AUTO, filled.getPageCompression());

        MigrationPolicy custom = MigrationPolicy.newBuilder()
                .setMaxDowntime(Duration.newBuilder().setSeconds(1).setNanos(500_000_000))
                .setBandwidthLimitBytesPerSecond(123_456_789)
                .setMaxRounds(7)
                .setMaxTotalTime(Duration.newBuilder().setSeconds(600))
                .setDataStreams(64)
                .setOnNoConvergence(NoConvergenceAction.CONTINUE)
                .setVerifyMemory(false)
                .setPageCompression(MigrationPolicy.PageCompression.LZ4)
                .build();
        ConvergencePolicy p = ConvergencePolicy.of(MigrationMode.PRECOPY, custom);
        assertEquals(java.time.Duration.ofMillis(1500), p.maxDowntime());
        assertEquals(java.time.Duration.ofMinutes(10), p.maxTotalTime());
        assertFalse(p.verifyMemory());
        assertEquals(custom, p.toProto());
        assertEquals(p, ConvergencePolicy.of(MigrationMode.PRECOPY, p.toProto()));
    }

    @Test
    void badFieldsAreRefused() {
        assertBad(MigrationPolicy.newBuilder().setPageCompressionValue(9), "page_compression");
        assertBad(MigrationPolicy.newBuilder().setDataStreams(65), "data_streams");
        assertBad(MigrationPolicy.newBuilder().setDataStreams(-1), "data_streams"); // uint32 4294967295
        assertBad(MigrationPolicy.newBuilder().setMaxDowntime(Duration.newBuilder().setSeconds(-1)), "max_downtime");
        assertBad(MigrationPolicy.newBuilder().setMaxDowntime(Duration.newBuilder().setSeconds(1).setNanos(-5)),
                "max_downtime");
        assertBad(MigrationPolicy.newBuilder().setMaxTotalTime(Duration.newBuilder().setSeconds(-10)),
                "max_total_time");
        assertBad(MigrationPolicy.newBuilder().setBandwidthLimitBytesPerSecond(-1), "bandwidth_limit");
        assertBad(MigrationPolicy.newBuilder().setOnNoConvergenceValue(42), "on_no_convergence");
    }

    @Test
    void hugeMaxRoundsMeansPracticallyUnlimited() {
        // uint32 4294967295 arrives as -1 in Java.
        assertEquals(Integer.MAX_VALUE, ConvergencePolicy.of(MigrationMode.PRECOPY,
                MigrationPolicy.newBuilder().setMaxRounds(-1).build()).maxRounds());
    }

    private static void assertBad(MigrationPolicy.Builder policy, String field) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ConvergencePolicy.of(MigrationMode.HYBRID, policy.build()));
        assertTrue(e.getMessage().contains(field), e.getMessage());
    }

    @Test
    void autoConvergeTakesItsDefaultsAndRefusesWhatCannotWork() {
        ConvergencePolicy on = ConvergencePolicy.of(MigrationMode.PRECOPY, MigrationPolicy.newBuilder()
                .setAutoConverge(dev.ferry.v1.AutoConverge.newBuilder().setEnabled(true)).build());
        assertEquals(new ConvergencePolicy.AutoConverge(true, 20, 10, 99), on.autoConverge());
        assertEquals(20, on.toProto().getAutoConverge().getInitialPercent());
        assertFalse(ConvergencePolicy.defaults(MigrationMode.PRECOPY).autoConverge().enabled());
        for (var bad : java.util.List.of(
                dev.ferry.v1.AutoConverge.newBuilder().setEnabled(true).setMaxPercent(100),
                dev.ferry.v1.AutoConverge.newBuilder().setEnabled(true).setInitialPercent(50).setMaxPercent(40),
                dev.ferry.v1.AutoConverge.newBuilder().setInitialPercent(30))) {
            assertThrows(IllegalArgumentException.class, () -> ConvergencePolicy.of(
                    MigrationMode.PRECOPY, MigrationPolicy.newBuilder().setAutoConverge(bad).build()), bad.toString());
        }
        IllegalArgumentException postcopy = assertThrows(IllegalArgumentException.class,
                () -> ConvergencePolicy.of(MigrationMode.POSTCOPY, MigrationPolicy.newBuilder()
                        .setAutoConverge(dev.ferry.v1.AutoConverge.newBuilder().setEnabled(true)).build()));
        assertTrue(postcopy.getMessage().contains("POSTCOPY"), postcopy.getMessage());
    }
}
