package dev.ferry.control.vm;

import dev.ferry.control.edge.Fields;
import dev.ferry.control.edge.Names;
import dev.ferry.guest.GuestAbi;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.v1.CheckVmMemoryRequest;
import dev.ferry.v1.CreateVmRequest;
import dev.ferry.v1.DeleteVmRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.ListVmsRequest;
import dev.ferry.v1.PauseVmRequest;
import dev.ferry.v1.RestoreVmRequest;
import dev.ferry.v1.ResumeVmRequest;
import dev.ferry.v1.SnapshotVmRequest;
import dev.ferry.v1.Vm;
import dev.ferry.v1.WorkloadSpec;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;

/**
 * The edge of VmService: every request field checked against its documented range (vm_service.proto,
 * common.proto) before a handler looks anything up or allocates anything. Each method throws
 * INVALID_ARGUMENT naming the field and quoting at most 128 characters of what was sent.
 */
public final class VmRequests {
    public static final long MAX_VCPUS = GuestAbi.MAX_VCPUS;
    /** The guest workload's page tables map this much. */
    public static final long MAX_MEMORY = GuestAbi.PD_MAX_PAGES << 30;
    /** Guest memory is laid out in 2 MiB units (slot alignment). */
    public static final long MEMORY_UNIT = GuestMemory.SLOT_ALIGN;
    /** A slot holds at most 1 GiB, so 32 GiB needs at most 32 slots. */
    public static final int MAX_SLOTS = (int) (MAX_MEMORY / MemoryRegion.MAX_SIZE);
    /** Above this a paced rate means nothing: no vCPU writes 1 TiB/s. */
    public static final long MAX_DIRTY_RATE = 1L << 40;
    public static final Duration MIN_REPORT_PERIOD = Duration.ofMillis(1);
    /** guest_pause waits up to two report periods: longer periods would stall every switchover. */
    public static final Duration MAX_REPORT_PERIOD = Duration.ofSeconds(10);
    private static final long HUGE_2M = 2L << 20;
    private static final long HUGE_1G = 1L << 30;

    private VmRequests() {}

    /** Checks a CreateVm request; returns the VM name it asks for (null: the agent picks one). */
    public static String check(CreateVmRequest r) {
        String name = r.getVmId().isEmpty() ? null : Names.VMS + Names.id("vm_id", r.getVmId());
        if (!r.hasVm()) {
            throw Fields.invalid("vm is required");
        }
        Vm vm = r.getVm();
        Fields.uint32("vm.vcpu_count", vm.getVcpuCount(), 1, MAX_VCPUS);
        long memory = memory("vm.memory_bytes", vm.getMemoryBytes());
        long backing = vm.getBackingPageSizeBytes();
        if (backing == HUGE_2M || backing == HUGE_1G) {
            throw Status.FAILED_PRECONDITION.withDescription("vm.backing_page_size_bytes " + backing
                    + ": this agent backs guest memory with 4 KiB pages only (no hugetlbfs)").asRuntimeException();
        }
        if (backing != 0 && backing != GuestAbi.PAGE_SIZE) {
            throw Fields.invalid("vm.backing_page_size_bytes " + Long.toUnsignedString(backing)
                    + " is not a page size (4096, 2097152 or 1073741824)");
        }
        List<Long> slots = vm.getMemorySlotSizesBytesList();
        if (slots.size() > MAX_SLOTS) {
            throw Fields.invalid("vm.memory_slot_sizes_bytes has " + slots.size() + " entries (at most " + MAX_SLOTS
                    + ")");
        }
        long sum = 0;
        for (int i = 0; i < slots.size(); i++) {
            long s = Fields.bytes("vm.memory_slot_sizes_bytes[" + i + "]", slots.get(i), MemoryRegion.MAX_SIZE,
                    MEMORY_UNIT);
            if (s == 0) {
                throw Fields.invalid("vm.memory_slot_sizes_bytes[" + i + "] must not be 0");
            }
            sum += s; // at most 32 entries of at most 1 GiB: no overflow
        }
        if (!slots.isEmpty() && sum != memory) {
            throw Fields.invalid("vm.memory_slot_sizes_bytes add up to " + sum + ", not memory_bytes " + memory);
        }
        workload("vm.workload", vm.getWorkload(), memory);
        Fields.known("vm.backend", vm.getBackend(), vm.getBackendValue());
        labels("vm.labels", vm.getLabelsMap());
        return name;
    }

    static final int MAX_LABELS = 32;
    private static final java.util.regex.Pattern LABEL_KEY = java.util.regex.Pattern.compile(
            "([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?");
    private static final java.util.regex.Pattern LABEL_VALUE = java.util.regex.Pattern.compile(
            "([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?");

    /** Kubernetes label rules (Vm.labels): at most 32, keys and values as the proto says. */
    public static java.util.Map<String, String> labels(String field, java.util.Map<String, String> labels) {
        if (labels.size() > MAX_LABELS) {
            throw Fields.invalid(field + " has " + labels.size() + " labels (at most " + MAX_LABELS + ")");
        }
        for (var e : labels.entrySet()) {
            if (!LABEL_KEY.matcher(e.getKey()).matches()) {
                throw Fields.invalid(field + " key '" + clip(e.getKey()) + "' is not a label key (1-63 of"
                        + " [A-Za-z0-9._-], starting and ending alphanumeric, optionally after a DNS prefix and '/')");
            }
            if (!LABEL_VALUE.matcher(e.getValue()).matches()) {
                throw Fields.invalid(field + "[" + e.getKey() + "] value '" + clip(e.getValue()) + "' is not a"
                        + " label value (0-63 of [A-Za-z0-9._-], starting and ending alphanumeric)");
            }
        }
        return java.util.Map.copyOf(labels);
    }

    /** At most 80 characters of untrusted text, for an error message. */
    private static String clip(String s) {
        return s.length() <= 80 ? s : s.substring(0, 77) + "...";
    }

    /** Guest memory size: 2 MiB units, 1 unit to 32 GiB. */
    public static long memory(String field, long bytes) {
        if (bytes == 0) {
            throw Fields.invalid(field + " is required (a multiple of 2 MiB, at most " + Fields.human(MAX_MEMORY) + ")");
        }
        return Fields.bytes(field, bytes, MAX_MEMORY, MEMORY_UNIT);
    }

    /** A WorkloadSpec for a VM of {@code memory} bytes. */
    public static void workload(String field, WorkloadSpec w, long memory) {
        long ws = Fields.bytes(field + ".working_set_bytes", w.getWorkingSetBytes(), memory, 0);
        if (w.getDirtyRateCase() == WorkloadSpec.DirtyRateCase.DIRTY_RATE_BYTES_PER_SECOND) {
            Fields.uint64(field + ".dirty_rate_bytes_per_second", w.getDirtyRateBytesPerSecond(), MAX_DIRTY_RATE);
        }
        Fields.known(field + ".access_pattern", w.getAccessPattern(), w.getAccessPatternValue());
        if (Long.compareUnsigned(w.getHotSetBytes(), Math.max(ws, 0)) > 0 && w.getHotSetBytes() != 0) {
            throw Fields.invalid(field + ".hot_set_bytes " + Long.toUnsignedString(w.getHotSetBytes())
                    + " is larger than working_set_bytes " + ws);
        }
        Fields.uint32(field + ".hot_write_permille", w.getHotWritePermille(), 0, 1000);
        if (w.getWordStride() != 0) {
            long stride = Fields.uint32(field + ".word_stride", w.getWordStride(), 1, 512);
            if (Long.bitCount(stride) != 1) {
                throw Fields.invalid(field + ".word_stride " + stride + " is not a power of two from 1 to 512");
            }
        }
        if (w.hasProgressReportPeriod() && !w.getProgressReportPeriod().equals(com.google.protobuf.Duration
                .getDefaultInstance())) {
            Fields.duration(field + ".progress_report_period", w.getProgressReportPeriod(), MIN_REPORT_PERIOD,
                    MAX_REPORT_PERIOD);
        }
    }

    public static String check(GetVmRequest r) {
        return name(r.getName());
    }

    public static String check(PauseVmRequest r) {
        return name(r.getName());
    }

    public static String check(ResumeVmRequest r) {
        return name(r.getName());
    }

    public static String check(DeleteVmRequest r) {
        return name(r.getName());
    }

    public static String check(CheckVmMemoryRequest r) {
        return name(r.getName());
    }

    public static String check(SnapshotVmRequest r) {
        name(r.getName());
        SnapshotStore.checkSyntax("snapshot_directory", r.getSnapshotDirectory());
        return r.getName();
    }

    /** Checks a RestoreVm request; returns the VM name it asks for (null: the agent picks one). */
    public static String check(RestoreVmRequest r) {
        String name = r.getVmId().isEmpty() ? null : Names.VMS + Names.id("vm_id", r.getVmId());
        SnapshotStore.checkSyntax("snapshot_directory", r.getSnapshotDirectory());
        return name;
    }

    public static void check(ListVmsRequest r) {
        if (r.getPageSize() < 0) {
            throw Fields.invalid("page_size must not be negative, got " + r.getPageSize());
        }
        if (r.getPageToken().length() > Pages.MAX_TOKEN) {
            throw Fields.invalid("invalid page_token");
        }
    }

    private static String name(String name) {
        Names.vm("name", name);
        return name;
    }
}
