package dev.ferry.control.migration;

import dev.ferry.v1.MemoryRegion;
import dev.ferry.v1.MigrationConfig;
import dev.ferry.v1.MigrationMode;
import java.time.Duration;

/** Shared test data: sizes, configs and synthetic rounds. */
final class Fixtures {
    static final long KiB = 1024;
    static final long MiB = 1024 * KiB;
    static final long GiB = 1024 * MiB;
    static final long GUEST_MEMORY = GiB;

    private Fixtures() {
    }

    /** An accepted config of 1 GiB in two regions, with POSTCOPY for modes that need it. */
    static MigrationConfig config(MigrationMode mode) {
        MigrationConfig.Builder b = MigrationConfig.newBuilder()
                .setMode(mode)
                .setVcpuCount(2)
                .setPageSizeBytes(4096)
                .setDataStreamCount(4)
                .addMemoryRegions(MemoryRegion.newBuilder().setSlot(0).setGuestPhysicalAddress(0)
                        .setSizeBytes(GUEST_MEMORY / 2).setPageSizeBytes(4096))
                .addMemoryRegions(MemoryRegion.newBuilder().setSlot(1).setGuestPhysicalAddress(GUEST_MEMORY)
                        .setSizeBytes(GUEST_MEMORY / 2).setPageSizeBytes(4096))
                .addFeatures(MigrationConfig.Feature.ZERO_PAGE_ELISION)
                .addFeatures(MigrationConfig.Feature.MEMORY_DIGEST);
        if (mode != MigrationMode.PRECOPY) {
            b.addFeatures(MigrationConfig.Feature.POSTCOPY);
        }
        return b.build();
    }

    static long pages(long bytes) {
        return bytes / RoundStats.PAGE_BYTES;
    }

    /** A round that sent {@code sent} bytes in {@code millis} ms while the guest dirtied {@code dirtied} bytes. */
    static RoundStats round(long sent, long dirtied, long millis) {
        return new RoundStats(pages(sent), 0, pages(dirtied), Duration.ofMillis(millis));
    }

    /** 1 GiB in 1 s, 512 MiB dirtied: expected downtime ~520 ms, not a stall: CONTINUE_PRECOPY by default. */
    static RoundStats busyRound() {
        return round(GiB, 512 * MiB, 1000);
    }

    /** 1 GiB in 1 s, nothing dirtied: converges. */
    static RoundStats quietRound() {
        return round(GiB, 0, 1000);
    }

    /** 1 GiB in 1 s, 2 GiB dirtied: the dirty rate is twice the transfer rate (a stall). */
    static RoundStats stalledRound() {
        return round(GiB, 2 * GiB, 1000);
    }
}
