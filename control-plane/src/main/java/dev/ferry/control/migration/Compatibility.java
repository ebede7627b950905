package dev.ferry.control.migration;

import dev.ferry.memory.GuestMemory;
import dev.ferry.vm.Backend;
import dev.ferry.vm.CpuidLeaf;
import dev.ferry.vm.HostTsc;
import dev.ferry.state.SectionSchema;
import dev.ferry.v1.CpuidEntry;
import dev.ferry.v1.MemoryRegion;
import dev.ferry.v1.MigrationConfig;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.Mismatch;
import dev.ferry.v1.StateSectionVersion;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Set;

/**
 * The destination's side of NegotiateMigration as a pure function: what it can accept of the
 * source's proposal, and every mismatch with a reason a person can act on.
 */
public final class Compatibility {
    public static final int MAX_VCPUS = 64;
    public static final int MAX_DATA_STREAMS = 16;
    static final Set<MigrationConfig.Feature> SUPPORTED_FEATURES = Set.of(MigrationConfig.Feature.ZERO_PAGE_ELISION,
            MigrationConfig.Feature.DIRTY_LOG_MANUAL_PROTECT, MigrationConfig.Feature.MEMORY_DIGEST,
            MigrationConfig.Feature.LZ4_PAGE_COMPRESSION, MigrationConfig.Feature.DEVICE_STATE_AT_SWITCHOVER);

    /** What this destination host offers for guests of {@code backend}. */
    public record Local(Backend backend, List<CpuidLeaf> supportedCpuid, Collection<SectionSchema<?>> schemas,
            Set<MigrationMode> modes, HostTsc tsc) {}

    /** The accepted configuration, or the mismatches that make the proposal unacceptable. */
    public record Result(MigrationConfig accepted, List<Mismatch> mismatches) {
        public boolean compatible() {
            return mismatches.isEmpty();
        }
    }

    private Compatibility() {}

    public static Result check(MigrationConfig p, Local local) {
        List<Mismatch> m = new ArrayList<>();
        if (p.getPageSizeBytes() != GuestMemory.PAGE_SIZE) {
            m.add(mismatch("page_size_bytes", p.getPageSizeBytes(), GuestMemory.PAGE_SIZE, "pages are 4 KiB here"));
        }
        if (p.getVcpuCount() == 0 || Integer.toUnsignedLong(p.getVcpuCount()) > MAX_VCPUS) { // uint32
            m.add(mismatch("vcpu_count", Integer.toUnsignedString(p.getVcpuCount()), "1.." + MAX_VCPUS,
                    "unsupported vCPU count"));
        }
        if (p.getHugepageSizesBytesCount() > 0) {
            m.add(mismatch("hugepage_sizes_bytes", p.getHugepageSizesBytesList(), "[]",
                    "guest memory is backed by 4 KiB pages here; hugepage backing is not supported"));
        }
        checkRegions(p.getMemoryRegionsList(), m);
        MigrationMode mode = p.getMode() == MigrationMode.MIGRATION_MODE_UNSPECIFIED ? MigrationMode.PRECOPY : p.getMode();
        if (mode == MigrationMode.UNRECOGNIZED) {
            m.add(mismatch("mode", p.getModeValue(), local.modes(), "unknown migration mode " + p.getModeValue()));
        } else if (!local.modes().contains(mode)) {
            m.add(mismatch("mode", mode, local.modes(), "this agent does not offer " + mode + " migration"));
        }
        checkCpuid(p.getCpuidEntriesList(), local.supportedCpuid(), m);
        if (!local.tsc().keepsRate(p.getTscKhz())) {
            m.add(mismatch("tsc_khz", p.getTscKhz(), local.tsc().khz(), "the guest's TSC would tick at another rate "
                    + "here, and this host cannot scale it (" + (local.backend() == Backend.KVM
                            ? "no KVM_CAP_TSC_CONTROL" : "a process guest reads the host's TSC") + ")"));
        }
        checkSections(p.getStateSectionsList(), local.schemas(), m);
        MigrationConfig.Builder accepted = p.toBuilder().setMode(mode)
                .setDataStreamCount(Math.max(1, Math.min(MAX_DATA_STREAMS, p.getDataStreamCount())))
                .clearFeatures().clearHugepageSizesBytes();
        for (MigrationConfig.Feature f : p.getFeaturesList()) {
            boolean postcopyHere = f == MigrationConfig.Feature.POSTCOPY && local.modes().contains(MigrationMode.POSTCOPY);
            if (SUPPORTED_FEATURES.contains(f) || postcopyHere) {
                accepted.addFeatures(f);
            }
        }
        return new Result(accepted.build(), m);
    }

    private static void checkRegions(List<MemoryRegion> regions, List<Mismatch> m) {
        if (regions.isEmpty()) {
            m.add(mismatch("memory_regions", "none", "at least one", "no guest memory proposed"));
            return;
        }
        long gpa = 0;
        for (int i = 0; i < regions.size(); i++) {
            MemoryRegion r = regions.get(i);
            String f = "memory_regions[" + i + "]";
            if (r.getGuestPhysicalAddress() != gpa) {
                m.add(mismatch(f + ".guest_physical_address", hex(r.getGuestPhysicalAddress()), hex(gpa),
                        "regions must be contiguous from 0"));
            }
            if (r.getSizeBytes() == 0 || r.getSizeBytes() % GuestMemory.SLOT_ALIGN != 0
                    || r.getSizeBytes() > dev.ferry.memory.MemoryRegion.MAX_SIZE) {
                m.add(mismatch(f + ".size_bytes", r.getSizeBytes(), "2 MiB multiple up to 1 GiB",
                        "slot size not supported"));
            }
            gpa = r.getGuestPhysicalAddress() + r.getSizeBytes();
        }
    }

    /** Every feature bit the guest saw must exist on this host, or the guest would break after resume. */
    private static void checkCpuid(List<CpuidEntry> proposed, List<CpuidLeaf> supported, List<Mismatch> m) {
        for (CpuidEntry e : proposed) {
            CpuidLeaf s = find(supported, e.getFunction(), e.getIndex());
            if (s == null) {
                continue; // leaves this host does not describe carry no features KVM could lack
            }
            if (!isFeatureLeaf(e.getFunction())) {
                continue;
            }
            String f = String.format("cpuid[0x%x.%d]", e.getFunction(), e.getIndex());
            if (e.getFunction() != 0x1) { // leaf 1 EBX holds the APIC id and counts, not features
                extra(f + ".ebx", e.getEbx(), s.ebx(), m);
            }
            extra(f + ".ecx", e.getEcx(), s.ecx(), m);
            extra(f + ".edx", e.getEdx(), s.edx(), m);
        }
    }

    /** Leaves whose registers are feature bitmaps (as opposed to sizes, counts or brand strings). */
    private static boolean isFeatureLeaf(int function) {
        return function == 0x1 || function == 0x7 || function == 0x80000001;
    }

    private static void extra(String field, int guest, int host, List<Mismatch> m) {
        int missing = guest & ~host;
        if (missing != 0) {
            m.add(mismatch(field, hex(guest), hex(host), String.format("the guest saw feature bits 0x%x this host lacks", missing)));
        }
    }

    private static void checkSections(List<StateSectionVersion> proposed, Collection<SectionSchema<?>> schemas,
            List<Mismatch> m) {
        for (StateSectionVersion v : proposed) {
            SectionSchema<?> s = schemas.stream().filter(x -> x.name().equals(v.getName())).findFirst().orElse(null);
            if (s == null) {
                if (v.getRequired()) {
                    m.add(mismatch("state_sections." + v.getName(), "v" + v.getVersion(), "unknown",
                            "required section this agent cannot restore"));
                }
                continue;
            }
            if (!s.canRead(v.getVersion(), v.getMinReaderVersion())) {
                m.add(mismatch("state_sections." + v.getName(),
                        "v" + v.getVersion() + " (readers >= v" + v.getMinReaderVersion() + ")",
                        "reads v" + s.minReadableVersion() + "..v" + s.version(), "section version not readable here"));
            }
        }
        for (SectionSchema<?> s : schemas) {
            if (s.required() && proposed.stream().noneMatch(v -> v.getName().equals(s.name()))) {
                m.add(mismatch("state_sections." + s.name(), "absent", "v" + s.version(),
                        "this agent needs that section to restore the VM"));
            }
        }
    }

    private static CpuidLeaf find(List<CpuidLeaf> l, int function, int index) {
        for (CpuidLeaf e : l) {
            if (e.function() == function && e.index() == index) {
                return e;
            }
        }
        return null;
    }

    private static String hex(long v) {
        return "0x" + Long.toHexString(v);
    }

    static Mismatch mismatch(String field, Object source, Object destination, String reason) {
        return Mismatch.newBuilder().setField(field).setSourceValue(String.valueOf(source))
                .setDestinationValue(String.valueOf(destination)).setReason(reason).build();
    }
}
