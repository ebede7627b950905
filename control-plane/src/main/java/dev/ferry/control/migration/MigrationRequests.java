package dev.ferry.control.migration;

import dev.ferry.control.edge.BoundedText;
import dev.ferry.control.edge.Fields;
import dev.ferry.control.edge.Names;
import dev.ferry.control.vm.VmRequests;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.v1.AbortIncomingMigrationRequest;
import dev.ferry.v1.CancelMigrationRequest;
import dev.ferry.v1.CompleteIncomingMigrationRequest;
import dev.ferry.v1.CompleteIncomingPostcopyRequest;
import dev.ferry.v1.CreateMigrationRequest;
import dev.ferry.v1.GetMigrationRequest;
import dev.ferry.v1.ListMigrationsRequest;
import dev.ferry.v1.MemoryDigest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationConfig;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.NegotiateMigrationRequest;
import dev.ferry.v1.PageBitmap;
import dev.ferry.v1.ResumeIncomingMigrationRequest;
import dev.ferry.v1.ResumeMigrationRequest;
import dev.ferry.v1.StateSectionVersion;
import dev.ferry.v1.SwitchToPostcopyRequest;
import dev.ferry.v1.TransferDeviceStateRequest;
import dev.ferry.v1.WatchMigrationRequest;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * The edge of MigrationService: every request field checked against its documented range
 * (migration_service.proto, common.proto) before a handler looks a migration up, dials a peer or allocates.
 * Each method throws INVALID_ARGUMENT naming the field and quoting at most 128 characters of what was sent.
 * What is well-formed but does not fit this host stays a mismatch (FAILED_PRECONDITION) for {@link Compatibility}.
 */
final class MigrationRequests {
    static final long PAGE = 4096;
    /** Pages of the largest guest: bounds digests' page_count and bitmap lengths. */
    static final long MAX_PAGES = VmRequests.MAX_MEMORY / PAGE;
    /** KVM_MAX_CPUID_ENTRIES. */
    static final int MAX_CPUID_ENTRIES = 256;
    /** Section kinds (vm, vcpu, each device) and instances (64 vCPUs, a few devices), with room to grow. */
    static final int MAX_SECTIONS = 1024;
    static final int MAX_SECTION_TEXT = 128;
    static final Duration MAX_DOWNTIME = Duration.ofMinutes(10);
    static final Duration MAX_TOTAL_TIME = Duration.ofDays(7);
    static final Duration MAX_WATCH_INTERVAL = Duration.ofHours(1);
    static final long MAX_BANDWIDTH = 1L << 40;
    /** Recorded as the destination's error: a few lines are plenty. */
    static final int MAX_REASON = 1024;
    private static final Pattern SECTION_NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]*");
    private static final long HUGE_2M = 2L << 20;
    private static final long HUGE_1G = 1L << 30;

    private MigrationRequests() {}

    // ---------------------------------------------------------------- caller -> source

    /** Returns the name asked for, or null when the agent picks the ID. */
    static String check(CreateMigrationRequest r) {
        String name = r.getMigrationId().isEmpty() ? null
                : Names.MIGRATIONS + Names.id("migration_id", r.getMigrationId());
        if (!r.hasMigration()) {
            throw Fields.invalid("migration is required");
        }
        Migration m = r.getMigration();
        Names.vm("migration.vm", m.getVm());
        Fields.hostPort("migration.destination_address", m.getDestinationAddress(), true);
        if (!m.getDestinationVm().isEmpty()) {
            Names.vm("migration.destination_vm", m.getDestinationVm());
        }
        Fields.known("migration.mode", m.getMode(), m.getModeValue());
        policy("migration.policy", m.getPolicy());
        return name;
    }

    private static void policy(String field, MigrationPolicy p) {
        if (p.hasMaxDowntime()) {
            Fields.duration(field + ".max_downtime", p.getMaxDowntime(), Duration.ZERO, MAX_DOWNTIME);
        }
        Fields.uint64(field + ".bandwidth_limit_bytes_per_second", p.getBandwidthLimitBytesPerSecond(), MAX_BANDWIDTH);
        if (p.hasMaxTotalTime()) {
            Fields.duration(field + ".max_total_time", p.getMaxTotalTime(), Duration.ZERO, MAX_TOTAL_TIME);
        }
        Fields.uint32(field + ".data_streams", p.getDataStreams(), 0, ConvergencePolicy.MAX_DATA_STREAMS);
        Fields.known(field + ".on_no_convergence", p.getOnNoConvergence(), p.getOnNoConvergenceValue());
        Fields.known(field + ".page_compression", p.getPageCompression(), p.getPageCompressionValue());
    }

    static String check(GetMigrationRequest r) {
        return name(r.getName());
    }

    /** The one path UpdateMigration can change. */
    static final String BANDWIDTH_PATH = "policy.bandwidth_limit_bytes_per_second";

    /** Checks an UpdateMigration request; returns the migration's name. */
    static String check(dev.ferry.v1.UpdateMigrationRequest r) {
        if (!r.hasMigration()) {
            throw Fields.invalid("migration is required (its name and the new values)");
        }
        String name = r.getMigration().getName();
        Names.migration("migration.name", name);
        if (r.getUpdateMask().getPathsCount() == 0) {
            throw Fields.invalid("update_mask is required: \"" + BANDWIDTH_PATH + "\"");
        }
        for (String path : r.getUpdateMask().getPathsList()) {
            if (!path.equals(BANDWIDTH_PATH)) {
                throw Fields.invalid("update_mask path " + BoundedText.quote(path) + " cannot change while a migration "
                        + "runs; only \"" + BANDWIDTH_PATH + "\" can");
            }
        }
        return name;
    }

    static String check(CancelMigrationRequest r) {
        return name(r.getName());
    }

    static String check(SwitchToPostcopyRequest r) {
        return name(r.getName());
    }

    /** Returns the progress interval to use: default when unset or zero, at least 10 ms (the proto's floor). */
    static Duration check(WatchMigrationRequest r, Duration byDefault) {
        name(r.getName());
        if (!r.hasProgressInterval()) {
            return byDefault;
        }
        Duration d = Fields.duration("progress_interval", r.getProgressInterval(), Duration.ZERO, MAX_WATCH_INTERVAL);
        return d.isZero() ? byDefault : d.compareTo(Duration.ofMillis(10)) < 0 ? Duration.ofMillis(10) : d;
    }

    static String check(ResumeMigrationRequest r) {
        Fields.hostPort("destination_address", r.getDestinationAddress(), false);
        return name(r.getName());
    }

    /** GetMigrationLimits has no fields: nothing to check, kept so every method has its check. */
    static void check(dev.ferry.v1.GetMigrationLimitsRequest r) {
        java.util.Objects.requireNonNull(r, "request");
    }

    static void check(ListMigrationsRequest r) {
        if (r.getPageSize() < 0) {
            throw Fields.invalid("page_size must not be negative, got " + r.getPageSize());
        }
        if (r.getPageToken().length() > 64) {
            throw Fields.invalid("invalid page_token");
        }
    }

    // ---------------------------------------------------------------- source -> destination

    static void check(NegotiateMigrationRequest r) {
        Names.migration("migration", r.getMigration());
        Names.vm("source_vm", r.getSourceVm());
        if (!r.getDestinationVmId().isEmpty()) {
            Names.id("destination_vm_id", r.getDestinationVmId());
        }
        Fields.hostPort("source_address", r.getSourceAddress(), true);
        if (!r.hasProposed()) {
            throw Fields.invalid("proposed is required");
        }
        MigrationConfig c = r.getProposed();
        long memory = regions("proposed.memory_regions", c.getMemoryRegionsList());
        Fields.uint32("proposed.vcpu_count", c.getVcpuCount(), 1, 0xffff_ffffL); // the host limit is a mismatch
        if (c.getCpuidEntriesCount() > MAX_CPUID_ENTRIES) {
            throw Fields.invalid("proposed.cpuid_entries has " + c.getCpuidEntriesCount() + " entries (at most "
                    + MAX_CPUID_ENTRIES + ")");
        }
        if (c.getHugepageSizesBytesCount() > 2) {
            throw Fields.invalid("proposed.hugepage_sizes_bytes has " + c.getHugepageSizesBytesCount()
                    + " entries (at most 2: 2 MiB and 1 GiB)");
        }
        for (long h : c.getHugepageSizesBytesList()) {
            if (h != HUGE_2M && h != HUGE_1G) {
                throw Fields.invalid("proposed.hugepage_sizes_bytes holds " + Long.toUnsignedString(h)
                        + ", not a hugepage size (2097152 or 1073741824)");
            }
        }
        stateSections(c.getStateSectionsList());
        MigrationMode mode = Fields.known("proposed.mode", c.getMode(), c.getModeValue());
        Fields.uint32("proposed.data_stream_count", c.getDataStreamCount(), 1, ConvergencePolicy.MAX_DATA_STREAMS);
        Fields.known("proposed.backend", c.getBackend(), c.getBackendValue());
        VmRequests.workload("workload", r.getWorkload(), memory);
        VmRequests.labels("vm_labels", r.getVmLabelsMap());
        boolean postcopy = mode == MigrationMode.POSTCOPY || mode == MigrationMode.HYBRID
                || c.getFeaturesList().contains(MigrationConfig.Feature.POSTCOPY);
        Fields.hostPort("postcopy_pager_address", r.getPostcopyPagerAddress(), postcopy);
    }

    /** Checks the proposed regions; returns their total size (at most 32 GiB). */
    private static long regions(String field, List<dev.ferry.v1.MemoryRegion> regions) {
        if (regions.isEmpty()) {
            throw Fields.invalid(field + " is required: at least one region");
        }
        if (regions.size() > VmRequests.MAX_SLOTS) {
            throw Fields.invalid(field + " has " + regions.size() + " regions (at most " + VmRequests.MAX_SLOTS + ")");
        }
        long total = 0;
        for (int i = 0; i < regions.size(); i++) {
            dev.ferry.v1.MemoryRegion x = regions.get(i);
            String f = field + "[" + i + "]";
            long size = Fields.bytes(f + ".size_bytes", x.getSizeBytes(), VmRequests.MAX_MEMORY, PAGE);
            if (size == 0) {
                throw Fields.invalid(f + ".size_bytes must not be 0");
            }
            Fields.bytes(f + ".guest_physical_address", x.getGuestPhysicalAddress(), VmRequests.MAX_MEMORY, PAGE);
            Fields.uint32(f + ".slot", x.getSlot(), 0, VmRequests.MAX_SLOTS - 1);
            long ps = x.getPageSizeBytes();
            if (ps != 0 && ps != PAGE && ps != HUGE_2M && ps != HUGE_1G) {
                throw Fields.invalid(f + ".page_size_bytes " + Long.toUnsignedString(ps)
                        + " is not a page size (4096, 2097152 or 1073741824)");
            }
            total += size; // each at most 32 GiB, at most 32 of them: no overflow
        }
        if (total > VmRequests.MAX_MEMORY) {
            throw Fields.invalid(field + " add up to " + total + " bytes (" + Fields.human(total) + "): at most "
                    + Fields.human(VmRequests.MAX_MEMORY));
        }
        return total;
    }

    private static void stateSections(List<StateSectionVersion> sections) {
        if (sections.size() > MAX_SECTIONS) {
            throw Fields.invalid("proposed.state_sections has " + sections.size() + " entries (at most "
                    + MAX_SECTIONS + ")");
        }
        Set<String> seen = new HashSet<>();
        for (int i = 0; i < sections.size(); i++) {
            StateSectionVersion s = sections.get(i);
            String f = "proposed.state_sections[" + i + "]";
            sectionName(f + ".name", s.getName());
            versions(f, s.getVersion(), s.getMinReaderVersion());
            if (!seen.add(s.getName())) {
                throw Fields.invalid(f + ": section " + BoundedText.quote(s.getName()) + " is listed twice");
            }
        }
    }

    static void check(TransferDeviceStateRequest r) {
        Names.migration("migration", r.getMigration());
        if (r.getState().isEmpty()) {
            throw Fields.invalid("state is required (the state-serializers stream of the paused VM)");
        }
        // Its contents are checked by the destination exactly as a restore checks them (DestinationDriver).
    }

    private static void sectionName(String field, String name) {
        if (name.isEmpty() || name.length() > MAX_SECTION_TEXT || !SECTION_NAME.matcher(name).matches()) {
            throw Fields.invalid(field + " " + BoundedText.quote(name) + " must be 1 to " + MAX_SECTION_TEXT
                    + " characters of [A-Za-z0-9._-], starting with a letter or digit");
        }
    }

    private static void versions(String field, int version, int minReader) {
        long v = Fields.uint32(field + ".version", version, 1, Integer.MAX_VALUE);
        long m = Fields.uint32(field + ".min_reader_version", minReader, 1, Integer.MAX_VALUE);
        if (m > v) {
            throw Fields.invalid(field + ".min_reader_version " + m + " is above version " + v);
        }
    }

    static void check(CompleteIncomingMigrationRequest r) {
        Names.migration("migration", r.getMigration());
        if (r.hasSourceMemoryDigest()) {
            if (r.getPostcopy()) {
                throw Fields.invalid("source_memory_digest must be unset with postcopy = true (it goes in"
                        + " CompleteIncomingPostcopy)");
            }
            digest("source_memory_digest", r.getSourceMemoryDigest());
        }
        if (!r.getPostcopy() && (r.getDiscardPagesCount() > 0 || r.getPushPagesCount() > 0)) {
            throw Fields.invalid("discard_pages and push_pages are only valid with postcopy = true");
        }
        bitmaps("discard_pages", r.getDiscardPagesList());
        bitmaps("push_pages", r.getPushPagesList());
    }

    static void check(CompleteIncomingPostcopyRequest r) {
        Names.migration("migration", r.getMigration());
        if (r.hasSourceMemoryDigest()) {
            digest("source_memory_digest", r.getSourceMemoryDigest());
        }
    }

    static void check(ResumeIncomingMigrationRequest r) {
        Names.migration("migration", r.getMigration());
        Fields.hostPort("postcopy_pager_address", r.getPostcopyPagerAddress(), true);
    }

    static void check(dev.ferry.v1.VerifyIncomingMigrationRequest r) {
        Names.migration("migration", r.getMigration());
    }

    static void check(dev.ferry.v1.CommitIncomingMigrationRequest r) {
        Names.migration("migration", r.getMigration());
    }

    static void check(AbortIncomingMigrationRequest r) {
        Names.migration("migration", r.getMigration());
    }

    /** The abort reason as recorded: free text from the source, bounded. */
    static String reason(AbortIncomingMigrationRequest r) {
        return r.hasReason() ? BoundedText.truncate(r.getReason().getMessage(), MAX_REASON) : "aborted by the source";
    }

    private static void digest(String field, MemoryDigest d) {
        MemoryDigest.Algorithm a = Fields.known(field + ".algorithm", d.getAlgorithm(), d.getAlgorithmValue());
        if (a == MemoryDigest.Algorithm.ALGORITHM_UNSPECIFIED) {
            throw Fields.invalid(field + ".algorithm is required");
        }
        if (d.getValue().size() != 8) {
            throw Fields.invalid(field + ".value must be 8 bytes for " + a + ", got " + d.getValue().size());
        }
        Fields.uint64(field + ".page_count", d.getPageCount(), MAX_PAGES);
    }

    private static void bitmaps(String field, List<PageBitmap> bitmaps) {
        if (bitmaps.size() > VmRequests.MAX_SLOTS) {
            throw Fields.invalid(field + " has " + bitmaps.size() + " bitmaps (at most one per region, "
                    + VmRequests.MAX_SLOTS + ")");
        }
        for (int i = 0; i < bitmaps.size(); i++) {
            PageBitmap b = bitmaps.get(i);
            String f = field + "[" + i + "]";
            Fields.uint32(f + ".slot", b.getSlot(), 0, VmRequests.MAX_SLOTS - 1);
            Fields.bytes(f + ".guest_physical_address", b.getGuestPhysicalAddress(), VmRequests.MAX_MEMORY, PAGE);
            if (b.getBitmap().size() > MemoryRegion.MAX_SIZE / PAGE / 8) {
                throw Fields.invalid(f + ".bitmap has " + b.getBitmap().size() + " bytes: a region of at most "
                        + Fields.human(MemoryRegion.MAX_SIZE) + " needs at most " + MemoryRegion.MAX_SIZE / PAGE / 8);
            }
        }
    }

    private static String name(String name) {
        Names.migration("name", name);
        return name;
    }
}
