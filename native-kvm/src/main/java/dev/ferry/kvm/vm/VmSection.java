package dev.ferry.kvm.vm;

import com.google.protobuf.ByteString;
import dev.ferry.kvm.state.v1.ClockState;
import dev.ferry.kvm.state.v1.IrqchipState;
import dev.ferry.kvm.state.v1.VmState;
import dev.ferry.kvm.sys.KvmClockData;
import dev.ferry.kvm.sys.KvmIrqchip;
import dev.ferry.kvm.sys.KvmPitState2;
import dev.ferry.kvm.sys.KvmVm;
import dev.ferry.linux.NativeException;
import dev.ferry.state.RestorePhase;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.StateException;
import dev.ferry.state.Stateful;

/** Section "kvm.vm": the in-kernel PIC, IOAPIC, PIT and KVM clock. Restored before any vCPU. */
final class VmSection implements Stateful<VmState> {
    static final SectionSchema<VmState> SCHEMA = SectionSchema.builder("kvm.vm", VmState.getDefaultInstance())
            .version(1).minReadableVersion(1).phase(RestorePhase.VM).build();

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
        VmState.Builder b = VmState.newBuilder();
        for (int chip = 0; chip < KvmIrqchip.KVM_NR_IRQCHIPS; chip++) {
            KvmIrqchip c = vm.getIrqchip(chip);
            b.addIrqchips(IrqchipState.newBuilder().setChipId(chip).setData(ByteString.copyFrom(c.chip)));
        }
        b.setPit2(ByteString.copyFrom(vm.getPit2().toBytes()));
        KvmClockData clock = vm.getClock();
        b.setClock(ClockState.newBuilder().setClockNs(clock.clock).setFlags(clock.flags));
        return b.build();
    }

    @Override
    public void restoreState(VmState s) throws StateException {
        KvmPitState2 pit = new KvmPitState2();
        try {
            pit.fromBytes(s.getPit2().toByteArray());
        } catch (IllegalArgumentException e) {
            throw new StateException(SCHEMA.name() + ": pit2: " + e.getMessage());
        }
        KvmIrqchip[] chips = new KvmIrqchip[s.getIrqchipsCount()];
        for (int i = 0; i < chips.length; i++) {
            IrqchipState st = s.getIrqchips(i);
            if (st.getChipId() >= KvmIrqchip.KVM_NR_IRQCHIPS || st.getData().size() != 512) {
                throw new StateException(SCHEMA.name() + ": irqchip " + st.getChipId() + " has "
                        + st.getData().size() + " bytes, expected chip 0..2 with 512 bytes");
            }
            chips[i] = new KvmIrqchip(st.getChipId());
            st.getData().copyTo(chips[i].chip, 0);
        }
        try {
            vm.setPit2(pit);
            KvmClockData clock = new KvmClockData();
            clock.clock = s.getClock().getClockNs();
            vm.setClock(clock);
            for (KvmIrqchip c : chips) {
                vm.setIrqchip(c);
            }
        } catch (NativeException e) {
            throw new StateException(SCHEMA.name() + ": the kernel refused the state: " + e.getMessage());
        }
    }
}
