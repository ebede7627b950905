package dev.ferry.control.vm;

import com.google.protobuf.Duration;
import com.google.protobuf.Timestamp;
import dev.ferry.guest.AccessPattern;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.vm.Backend;
import dev.ferry.vm.GuestProbe;
import dev.ferry.vm.GuestVm;
import dev.ferry.vm.VmConfig;
import dev.ferry.v1.Vm;
import io.grpc.Status;
import java.time.Instant;

/** Conversions between the runtime's types and ferry.v1 messages. */
public final class VmProtos {
    private VmProtos() {}

    public static Timestamp timestamp(Instant i) {
        return Timestamp.newBuilder().setSeconds(i.getEpochSecond()).setNanos(i.getNano()).build();
    }

    public static Duration duration(long nanos) {
        return Duration.newBuilder().setSeconds(nanos / 1_000_000_000L).setNanos((int) (nanos % 1_000_000_000L)).build();
    }

    public static java.time.Duration toJava(Duration d) {
        return java.time.Duration.ofSeconds(d.getSeconds(), d.getNanos());
    }

    public static dev.ferry.v1.WorkloadSpec toProto(WorkloadSpec w) {
        dev.ferry.v1.WorkloadSpec.Builder b = dev.ferry.v1.WorkloadSpec.newBuilder()
                .setWorkingSetBytes(w.workingSetBytes())
                .setAccessPattern(switch (w.pattern()) {
                    case SEQUENTIAL -> dev.ferry.v1.WorkloadSpec.AccessPattern.SEQUENTIAL;
                    case RANDOM -> dev.ferry.v1.WorkloadSpec.AccessPattern.RANDOM;
                    case HOT_COLD -> dev.ferry.v1.WorkloadSpec.AccessPattern.HOT_COLD;
                })
                .setHotSetBytes(w.workingSetBytes() * w.hotPermille() / 1000)
                .setHotWritePermille(w.hotWritePermille())
                .setProgressReportPeriod(duration(w.reportPeriod().toNanos()))
                .setWordStride(w.wordStride());
        if (w.unlimited()) {
            b.setUnlimitedDirtyRate(true);
        } else {
            b.setDirtyRateBytesPerSecond(w.dirtyRateBytesPerSecond());
        }
        return b.build();
    }

    /** A runtime workload from the API's; INVALID_ARGUMENT with the reason when it is not valid. */
    public static WorkloadSpec fromProto(dev.ferry.v1.WorkloadSpec p, long defaultWorkingSet) {
        // common.proto: rounded up to a multiple of 4096 (the caller checked it fits in memory, so no overflow).
        long ws = p.getWorkingSetBytes() == 0 ? defaultWorkingSet : (p.getWorkingSetBytes() + 4095) / 4096 * 4096;
        AccessPattern pattern = switch (p.getAccessPattern()) {
            case SEQUENTIAL -> AccessPattern.SEQUENTIAL;
            case HOT_COLD -> AccessPattern.HOT_COLD;
            default -> AccessPattern.RANDOM;
        };
        java.time.Duration period = p.hasProgressReportPeriod() && !toJava(p.getProgressReportPeriod()).isZero()
                ? toJava(p.getProgressReportPeriod()) : WorkloadSpec.DEFAULT_REPORT_PERIOD;
        int hotPermille = p.getHotSetBytes() == 0 || ws == 0 ? 100
                : (int) Math.max(1, Math.min(1000, p.getHotSetBytes() * 1000 / ws));
        int hotWrite = p.getHotWritePermille() == 0 ? 900 : p.getHotWritePermille();
        try {
            return new WorkloadSpec(ws, p.getDirtyRateBytesPerSecond(), p.getUnlimitedDirtyRate(), pattern, period,
                    0x5eed, hotPermille, hotWrite, p.getWordStride() == 0 ? 1 : p.getWordStride());
        } catch (IllegalArgumentException e) {
            throw Status.INVALID_ARGUMENT.withDescription("workload: " + e.getMessage()).asRuntimeException();
        }
    }

    public static dev.ferry.v1.Backend toProto(Backend b) {
        return switch (b) {
            case KVM -> dev.ferry.v1.Backend.KVM;
            case PROCESS -> dev.ferry.v1.Backend.PROCESS;
        };
    }

    /** The runtime backend an API value names; UNSPECIFIED (older peers) means KVM. */
    public static Backend fromProto(dev.ferry.v1.Backend b) {
        return switch (b) {
            case PROCESS -> Backend.PROCESS;
            case KVM, BACKEND_UNSPECIFIED -> Backend.KVM;
            default -> throw Status.INVALID_ARGUMENT.withDescription("unknown backend value " + b.getNumber())
                    .asRuntimeException();
        };
    }

    public static Vm toProto(ManagedVm m) {
        GuestVm vm = m.vm();
        VmConfig config = vm.shape().config();
        Vm.Builder b = Vm.newBuilder().setName(m.name()).setState(m.state()).setVcpuCount(config.vcpus())
                .setMemoryBytes(config.memoryBytes()).setBackingPageSizeBytes(4096)
                .setWorkload(toProto(config.workload())).setCreateTime(timestamp(m.createTime()))
                .setMigration(m.migration()).setBackend(toProto(vm.backend())).putAllLabels(m.labels());
        for (MemoryRegion r : vm.memory().regions()) {
            b.addMemorySlotSizesBytes(r.size());
            b.addMemoryRegions(dev.ferry.v1.MemoryRegion.newBuilder().setGuestPhysicalAddress(r.guestPhysAddr())
                    .setSizeBytes(r.size()).setSlot(r.slot()).setPageSizeBytes(4096));
        }
        // Reading guest memory of a VM whose pages are still arriving could block; only report
        // progress for VMs that run here.
        GuestProbe probe = vm.probe().orElse(null);
        if (probe != null && (m.state() == Vm.State.RUNNING || m.state() == Vm.State.PAUSED
                || m.state() == Vm.State.MIGRATING_OUT)) {
            b.setGuestProgress(probe.guestCounter());
            long last = probe.reportStats().lastReportNanos();
            if (last != 0) {
                long ageNanos = System.nanoTime() - last;
                b.setLastProgressTime(timestamp(Instant.now().minusNanos(Math.max(0, ageNanos))));
            }
        }
        b.setVcpuExits(vm.vcpuExits());
        String err = m.error();
        if (err != null && !err.isEmpty()) {
            b.setError(com.google.rpc.Status.newBuilder().setCode(Status.Code.INTERNAL.value()).setMessage(err));
        }
        return b.build();
    }
}
