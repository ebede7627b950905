package dev.ferry.kvm.vm;

import dev.ferry.kvm.state.v1.ClockState;
import dev.ferry.kvm.state.v1.IoapicRedirection;
import dev.ferry.kvm.state.v1.IoapicState;
import dev.ferry.kvm.state.v1.IrqchipState;
import dev.ferry.kvm.state.v1.PicState;
import dev.ferry.kvm.state.v1.PitChannelState;
import dev.ferry.kvm.state.v1.PitState;
import dev.ferry.kvm.state.v1.VmState;
import dev.ferry.kvm.sys.IoapicRedirectionBits;
import dev.ferry.kvm.sys.KvmClockData;
import dev.ferry.kvm.sys.KvmIoapicState;
import dev.ferry.kvm.sys.KvmIrqchip;
import dev.ferry.kvm.sys.KvmPicState;
import dev.ferry.kvm.sys.KvmPitChannelState;
import dev.ferry.kvm.sys.KvmPitState2;
import dev.ferry.kvm.sys.KvmVm;
import dev.ferry.linux.NativeException;
import dev.ferry.state.RestorePhase;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.StateException;
import dev.ferry.state.Stateful;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * Section "kvm.vm": the in-kernel PIC, IOAPIC, PIT and KVM clock, every kernel field a typed field. Restored
 * before any vCPU. Version 1 stored the PIC/IOAPIC union and kvm_pit_state2 as raw bytes; its upgrade step
 * decodes them, so version-1 snapshots keep loading.
 */
final class VmSection implements Stateful<VmState> {
    static final int PIT_CHANNELS = 3;

    static final SectionSchema<VmState> SCHEMA = SectionSchema.builder("kvm.vm", VmState.getDefaultInstance())
            .version(2).upgrade(1, VmSection::fromVersion1).phase(RestorePhase.VM).build();

    private static final Set<String> PIT_NESTED = Set.of("channels");
    private static final Set<String> IOAPIC_NESTED = Set.of("redirtbl");
    private static final Set<String> NONE = Set.of();

    private final KvmVm vm;

    VmSection(KvmVm vm) {
        this.vm = vm;
    }

    @Override
    public SectionSchema<VmState> schema() {
        return SCHEMA;
    }

    @Override
    public String instanceId() {
        return "";
    }

    @Override
    public VmState saveState() {
        return VmState.newBuilder()
                .setPicMaster(pic(vm.getIrqchip(KvmIrqchip.KVM_IRQCHIP_PIC_MASTER).pic()))
                .setPicSlave(pic(vm.getIrqchip(KvmIrqchip.KVM_IRQCHIP_PIC_SLAVE).pic()))
                .setIoapic(ioapic(vm.getIrqchip(KvmIrqchip.KVM_IRQCHIP_IOAPIC).ioapic()))
                .setPit(pit(vm.getPit2()))
                .setClock(clock(vm.getClock()))
                .build();
    }

    /** Every part present, the PIT with its three channels and the IOAPIC with all its pins, each value in range. */
    @Override
    public void validateState(VmState s) throws StateException {
        List<String> problems = new ArrayList<>();
        if (!s.hasPicMaster()) {
            problems.add("pic_master is missing");
        } else {
            KernelStructFields.checkFits(s.getPicMaster(), KvmPicState.class, NONE, "pic_master", problems);
        }
        if (!s.hasPicSlave()) {
            problems.add("pic_slave is missing");
        } else {
            KernelStructFields.checkFits(s.getPicSlave(), KvmPicState.class, NONE, "pic_slave", problems);
        }
        if (!s.hasIoapic()) {
            problems.add("ioapic is missing");
        } else if (s.getIoapic().getRedirtblCount() != KvmIoapicState.KVM_IOAPIC_NUM_PINS) {
            problems.add("ioapic.redirtbl: " + s.getIoapic().getRedirtblCount() + " entries, the IOAPIC has "
                    + KvmIoapicState.KVM_IOAPIC_NUM_PINS + " pins");
        } else {
            for (int i = 0; i < s.getIoapic().getRedirtblCount(); i++) {
                checkRedirection(s.getIoapic().getRedirtbl(i), "ioapic.redirtbl[" + i + "]", problems);
            }
        }
        if (!s.hasPit()) {
            problems.add("pit is missing");
        } else if (s.getPit().getChannelsCount() != PIT_CHANNELS) {
            problems.add("pit.channels: " + s.getPit().getChannelsCount() + " channels, the i8254 has " + PIT_CHANNELS);
        } else {
            for (int i = 0; i < PIT_CHANNELS; i++) {
                PitChannelState c = s.getPit().getChannels(i);
                String path = "pit.channels[" + i + "]";
                KernelStructFields.checkFits(c, KvmPitChannelState.class, NONE, path, problems);
                if (Integer.toUnsignedLong(c.getCount()) > 0x10000) {
                    problems.add(path + ".count: " + Integer.toUnsignedString(c.getCount())
                            + " is over 65536, the largest count an i8254 loads");
                }
            }
        }
        if (!s.hasClock()) {
            problems.add("clock is missing");
        }
        if (!problems.isEmpty()) {
            throw new StateException(SCHEMA.name(), "", String.join("; ", problems));
        }
    }

    /** Applies a state {@link #validateState} accepted. */
    @Override
    public void restoreState(VmState s) throws StateException {
        try {
            vm.setPit2(pit(s.getPit()));
            KvmClockData clock = new KvmClockData();
            clock.clock = s.getClock().getClockNs(); // no KVM_CLOCK_REALTIME: the paused guest's clock must not jump
            vm.setClock(clock);
            vm.setIrqchip(chip(KvmIrqchip.KVM_IRQCHIP_PIC_MASTER, s.getPicMaster()));
            vm.setIrqchip(chip(KvmIrqchip.KVM_IRQCHIP_PIC_SLAVE, s.getPicSlave()));
            KvmIrqchip io = new KvmIrqchip(KvmIrqchip.KVM_IRQCHIP_IOAPIC);
            io.setIoapic(ioapic(s.getIoapic()));
            vm.setIrqchip(io);
        } catch (NativeException e) {
            throw new StateException(SCHEMA.name(), "", "the kernel refused the state: " + e.getMessage());
        }
    }

    // ---- kernel structures <-> typed fields

    static PicState pic(KvmPicState c) {
        PicState.Builder b = PicState.newBuilder();
        KernelStructFields.toProto(c, b, NONE);
        return b.build();
    }

    static KvmPicState pic(PicState p) {
        KvmPicState c = new KvmPicState();
        KernelStructFields.fromProto(p, c, NONE);
        return c;
    }

    private static KvmIrqchip chip(int id, PicState p) {
        KvmIrqchip chip = new KvmIrqchip(id);
        chip.setPic(pic(p));
        return chip;
    }

    static IoapicState ioapic(KvmIoapicState c) {
        IoapicState.Builder b = IoapicState.newBuilder();
        KernelStructFields.toProto(c, b, IOAPIC_NESTED);
        for (long bits : c.redirtbl) {
            b.addRedirtbl(redirection(bits));
        }
        return b.build();
    }

    static KvmIoapicState ioapic(IoapicState p) {
        KvmIoapicState c = new KvmIoapicState();
        KernelStructFields.fromProto(p, c, IOAPIC_NESTED);
        for (int i = 0; i < c.redirtbl.length; i++) {
            c.redirtbl[i] = bits(p.getRedirtbl(i));
        }
        return c;
    }

    /** One entry's bits as its named fields (the proto fields carry the C bit-field names). */
    static IoapicRedirection redirection(long bits) {
        IoapicRedirection.Builder b = IoapicRedirection.newBuilder()
                .setReservedBits(bits & IoapicRedirectionBits.RESERVED_MASK);
        for (IoapicRedirectionBits f : IoapicRedirectionBits.values()) {
            b.setField(KernelStructFields.byName(IoapicRedirection.getDescriptor(), f.cName()), f.get(bits));
        }
        return b.build();
    }

    /** The entry's bits; every field must fit (see {@link #validateState}). */
    static long bits(IoapicRedirection e) {
        long bits = e.getReservedBits() & IoapicRedirectionBits.RESERVED_MASK;
        for (IoapicRedirectionBits f : IoapicRedirectionBits.values()) {
            bits = f.set(bits, field(e, f));
        }
        return bits;
    }

    private static int field(IoapicRedirection e, IoapicRedirectionBits f) {
        return (Integer) e.getField(KernelStructFields.byName(IoapicRedirection.getDescriptor(), f.cName()));
    }

    private static void checkRedirection(IoapicRedirection e, String path, List<String> problems) {
        for (IoapicRedirectionBits f : IoapicRedirectionBits.values()) {
            int v = field(e, f);
            if (Integer.toUnsignedLong(v) > f.max()) {
                problems.add(path + "." + f.cName() + ": " + Integer.toUnsignedString(v) + " does not fit its "
                        + Long.bitCount(f.mask()) + " bits");
            }
        }
        if ((e.getReservedBits() & ~IoapicRedirectionBits.RESERVED_MASK) != 0) {
            problems.add(path + ".reserved_bits: 0x" + Long.toHexString(e.getReservedBits())
                    + " overlaps the named fields (reserved bits are 0x"
                    + Long.toHexString(IoapicRedirectionBits.RESERVED_MASK) + ")");
        }
    }

    static PitState pit(KvmPitState2 c) {
        PitState.Builder b = PitState.newBuilder();
        KernelStructFields.toProto(c, b, PIT_NESTED);
        for (KvmPitChannelState ch : c.channels) {
            PitChannelState.Builder cb = PitChannelState.newBuilder();
            KernelStructFields.toProto(ch, cb, NONE);
            b.addChannels(cb);
        }
        return b.build();
    }

    static KvmPitState2 pit(PitState p) {
        KvmPitState2 c = new KvmPitState2();
        KernelStructFields.fromProto(p, c, PIT_NESTED);
        for (int i = 0; i < c.channels.length; i++) {
            KernelStructFields.fromProto(p.getChannels(i), c.channels[i], NONE);
        }
        return c;
    }

    static ClockState clock(KvmClockData c) {
        return ClockState.newBuilder().setClockNs(c.clock).setFlags(c.flags).setRealtime(c.realtime)
                .setHostTsc(c.host_tsc).build();
    }

    /**
     * Version 1 to 2: decodes the raw kernel structures into the typed fields and drops them. Raw data of the
     * wrong size cannot be decoded and fails the step (so the restore refuses, naming this section).
     */
    @SuppressWarnings("deprecation") // the version-1 fields exist for this step alone
    static VmState fromVersion1(VmState v1) {
        VmState.Builder b = v1.toBuilder().clearIrqchips().clearPit2();
        if (!v1.getPit2().isEmpty()) {
            KvmPitState2 pit = new KvmPitState2();
            pit.fromBytes(v1.getPit2().toByteArray());
            b.setPit(pit(pit));
        }
        for (IrqchipState st : v1.getIrqchipsList()) {
            KvmIrqchip chip = new KvmIrqchip(st.getChipId());
            if (st.getData().size() != chip.chip.length) {
                throw new IllegalArgumentException("irqchip " + st.getChipId() + " has " + st.getData().size()
                        + " bytes, expected " + chip.chip.length);
            }
            st.getData().copyTo(chip.chip, 0);
            switch (st.getChipId()) {
                case KvmIrqchip.KVM_IRQCHIP_PIC_MASTER -> b.setPicMaster(pic(chip.pic()));
                case KvmIrqchip.KVM_IRQCHIP_PIC_SLAVE -> b.setPicSlave(pic(chip.pic()));
                case KvmIrqchip.KVM_IRQCHIP_IOAPIC -> b.setIoapic(ioapic(chip.ioapic()));
                default -> throw new IllegalArgumentException("irqchip " + st.getChipId() + " is not 0, 1 or 2");
            }
        }
        return b.build();
    }
}
