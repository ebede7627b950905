package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.vm.Backend;
import dev.ferry.vm.HostTsc;
import dev.ferry.v1.MemoryRegion;
import dev.ferry.v1.MigrationConfig;
import dev.ferry.v1.MigrationMode;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** The destination's verdict on a proposal, here for the guest's TSC rate (KVM's 250 ppm rule). */
class CompatibilityTest {
    private static Compatibility.Result check(int proposedKhz, int hostKhz, boolean scalable) {
        MigrationConfig p = MigrationConfig.newBuilder().setVcpuCount(1).setPageSizeBytes(4096).setTscKhz(proposedKhz)
                .addMemoryRegions(MemoryRegion.newBuilder().setSizeBytes(64 << 20)).build();
        return Compatibility.check(p, new Compatibility.Local(Backend.KVM, List.of(), List.of(),
                Set.of(MigrationMode.PRECOPY), new HostTsc(hostKhz, scalable)));
    }

    @Test
    void aTscRateWithinKvmsToleranceOrScalableHereIsAccepted() {
        assertTrue(check(3_000_000, 3_000_000, false).compatible());
        assertTrue(check(3_000_000, 3_000_700, false).compatible(), "233 ppm");
        assertTrue(check(2_000_000, 3_000_000, true).compatible(), "KVM_CAP_TSC_CONTROL scales it");
        assertTrue(check(0, 3_000_000, false).compatible(), "the source could not tell");
    }

    @Test
    void aTscRateThisHostCannotMatchIsAMismatchThatSaysWhy() {
        Compatibility.Result r = check(3_000_000, 3_000_800, false); // 267 ppm
        assertEquals(1, r.mismatches().size(), r.mismatches().toString());
        assertEquals("tsc_khz", r.mismatches().get(0).getField());
        assertTrue(r.mismatches().get(0).getReason().contains("KVM_CAP_TSC_CONTROL"), r.mismatches().toString());
    }

    @Test
    void hugepageBackingIsAMismatchNotSilentlyDropped() {
        MigrationConfig p = MigrationConfig.newBuilder().setVcpuCount(1).setPageSizeBytes(4096)
                .addHugepageSizesBytes(2L << 20).addMemoryRegions(MemoryRegion.newBuilder().setSizeBytes(64 << 20)).build();
        var r = Compatibility.check(p, new Compatibility.Local(Backend.KVM, List.of(), List.of(),
                Set.of(MigrationMode.PRECOPY), new HostTsc(3_000_000, false)));
        assertEquals(List.of("hugepage_sizes_bytes"), r.mismatches().stream().map(m -> m.getField()).toList());
    }
}
