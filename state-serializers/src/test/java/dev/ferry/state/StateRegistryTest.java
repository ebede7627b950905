package dev.ferry.state;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.ferry.state.test.Regs;
import dev.ferry.state.test.VcpuState;
import dev.ferry.state.test.VmState;
import dev.ferry.state.test.v2.UartState;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class StateRegistryTest {
    private List<String> journal;
    private Recording<UartState> com1;
    private Recording<VcpuState> vcpu0;
    private Recording<VmState> vm;
    private Recording<VcpuState> vcpu1;

    /** Source components, registered deliberately out of phase order. */
    private StateRegistry source() {
        StateRegistry r = new StateRegistry();
        r.register(new Recording<>(TestSchemas.UART_V2, "com1",
                UartState.newBuilder().setInterruptEnable(3).build(), journal));
        r.register(new Recording<>(TestSchemas.VCPU, "0", vcpu(0x10000), journal));
        r.register(new Recording<>(TestSchemas.VM, "", VmState.newBuilder().setClockNs(42).build(), journal));
        r.register(new Recording<>(TestSchemas.VCPU, "1", vcpu(0x20000), journal));
        return r;
    }

    /** Fresh target components in the same (out of phase) registration order. */
    private StateRegistry target() {
        StateRegistry r = new StateRegistry();
        r.register(com1 = new Recording<>(TestSchemas.UART_V2, "com1", UartState.getDefaultInstance(), journal));
        r.register(vcpu0 = new Recording<>(TestSchemas.VCPU, "0", VcpuState.getDefaultInstance(), journal));
        r.register(vm = new Recording<>(TestSchemas.VM, "", VmState.getDefaultInstance(), journal));
        r.register(vcpu1 = new Recording<>(TestSchemas.VCPU, "1", VcpuState.getDefaultInstance(), journal));
        return r;
    }

    private static VcpuState vcpu(long rip) {
        return VcpuState.newBuilder().setRegs(Regs.newBuilder().setRip(rip)).build();
    }

    @BeforeEach
    void setUp() {
        journal = Recording.journal();
    }

    @Test
    void saveIsInPhaseThenRegistrationOrder() {
        SectionSet saved = source().save();
        assertEquals(List.of("kvm.vm", "kvm.vcpu/0", "kvm.vcpu/1", "test.uart/com1"),
                saved.sections().stream().map(Section::label).toList());
        assertEquals(List.of("save kvm.vm", "save kvm.vcpu/0", "save kvm.vcpu/1", "save test.uart/com1"), journal);
    }

    @Test
    void restoreAppliesInPhaseOrderWhateverTheStreamOrder() throws StateException {
        List<Section> reversed = new ArrayList<>(source().save().sections());
        java.util.Collections.reverse(reversed);
        StateRegistry target = target();
        journal.clear();
        target.restore(SectionSet.of(reversed));
        assertEquals(List.of("restore kvm.vm", "restore kvm.vcpu/0", "restore kvm.vcpu/1", "restore test.uart/com1"),
                journal);
        assertEquals(42, vm.state().getClockNs());
        assertEquals(0x20000, vcpu1.state().getRegs().getRip());
        assertEquals(3, com1.state().getInterruptEnable());
    }

    @Test
    void missingRequiredSectionIsRefusedByName() {
        SectionSet saved = without(source().save(), "kvm.vcpu", "1");
        StateRegistry target = target();
        journal.clear();
        StateException e = assertThrows(StateException.class, () -> target.restore(saved));
        assertEquals("state refused, nothing was restored: section kvm.vcpu/1: required section is missing from the"
                + " stream (the source did not save it: different VM configuration, or a Ferry build without this"
                + " component)", e.getMessage());
        assertEquals("kvm.vcpu", e.section().orElseThrow());
        assertEquals("1", e.instanceId().orElseThrow());
        assertEquals(List.of(), journal);
    }

    @Test
    void unknownRequiredSectionIsRefusedByName() {
        SectionSet saved = with(source().save(), new Section("device.virtio-rng", "0", 1, 1, true, ByteString.EMPTY));
        StateRegistry target = target();
        journal.clear();
        StateException e = assertThrows(StateException.class, () -> target.restore(saved));
        assertTrue(e.getMessage().contains("section device.virtio-rng/0: required section is unknown here: no"
                + " device.virtio-rng component is registered"), e.getMessage());
        assertEquals(List.of(), journal);
    }

    @Test
    void requiredSectionForAnUnknownInstanceIsRefused() {
        SectionSet saved = with(source().save(), TestSchemas.VCPU.encode("2", vcpu(1)));
        StateRegistry target = target();
        journal.clear();
        StateException e = assertThrows(StateException.class, () -> target.restore(saved));
        assertTrue(e.getMessage().contains("section kvm.vcpu/2: required section has no matching component in this"
                + " VM (it has kvm.vcpu instances 0, 1)"), e.getMessage());
        assertEquals(List.of(), journal);
    }

    @Test
    void unknownOptionalSectionIsSkipped() throws StateException {
        SectionSet saved = with(source().save(), new Section("device.balloon", "", 7, 7, false,
                ByteString.copyFromUtf8("whatever")));
        StateRegistry target = target();
        journal.clear();
        target.restore(saved);
        assertEquals(4, journal.size());
    }

    @Test
    void absentOptionalSectionLeavesTheComponentAlone() throws StateException {
        SectionSchema<VmState> optional = SectionSchema.builder("kvm.pvclock", VmState.getDefaultInstance())
                .phase(RestorePhase.VM).required(false).build();
        StateRegistry target = target();
        Recording<VmState> pvclock = new Recording<>(optional, "", VmState.newBuilder().setClockNs(9).build(),
                journal);
        target.register(pvclock);
        journal.clear();
        target.restore(source().save());
        assertEquals(9, pvclock.state().getClockNs());
        assertEquals(4, journal.stream().filter(s -> s.startsWith("restore")).count());
    }

    @Test
    void everyProblemIsReportedAndNothingIsRestored() {
        SectionSet saved = source().save();
        List<Section> broken = new ArrayList<>();
        for (Section s : saved) {
            if (s.name().equals("kvm.vm")) {
                broken.add(new Section(s.name(), s.instanceId(), 9, 9, true, s.payload())); // too new
            } else if (s.label().equals("kvm.vcpu/1")) {
                broken.add(new Section(s.name(), s.instanceId(), 1, 1, true, ByteString.copyFrom(new byte[] {10})));
            } else if (!s.label().equals("test.uart/com1")) {
                broken.add(s);
            }
        }
        broken.add(new Section("device.gpu", "0", 1, 1, true, ByteString.EMPTY));
        StateRegistry target = target();
        journal.clear();
        StateException e = assertThrows(StateException.class, () -> target.restore(SectionSet.of(broken)));
        String m = e.getMessage();
        assertTrue(m.startsWith("state refused, nothing was restored (4 problems):\n"), m);
        assertTrue(m.contains("\n  - section device.gpu/0: required section is unknown here"), m);
        assertTrue(m.contains("\n  - section kvm.vm: written at version 9 for readers of version >= 9"), m);
        assertTrue(m.contains("\n  - section kvm.vcpu/1: payload (1 bytes, version 1) is not a valid"
                + " ferry.state.test.VcpuState"), m);
        assertTrue(m.contains("\n  - section test.uart/com1: required section is missing"), m);
        assertEquals(4, e.problems().size());
        assertEquals(List.of(), journal);
    }

    @Test
    void componentValidationRunsBeforeAnythingIsApplied() {
        StateRegistry target = new StateRegistry();
        target.register(new Recording<>(TestSchemas.VM, "", VmState.getDefaultInstance(), journal));
        target.register(new Recording<>(TestSchemas.VCPU, "0", VcpuState.getDefaultInstance(), journal));
        target.register(new Recording<>(TestSchemas.VCPU, "1", VcpuState.getDefaultInstance(), journal));
        target.register(new Recording<>(TestSchemas.UART_V2, "com1", UartState.getDefaultInstance(), journal)
                .refusing("FIFO longer than 16 bytes"));
        SectionSet saved = source().save();
        journal.clear();
        StateException e = assertThrows(StateException.class, () -> target.restore(saved));
        assertEquals("state refused, nothing was restored: section test.uart/com1: FIFO longer than 16 bytes",
                e.getMessage());
        assertEquals(List.of(), journal, "the VM and vCPU phases were not applied either");
    }

    @Test
    void failureWhileApplyingSaysTheVmIsInconsistent() {
        StateRegistry target = new StateRegistry();
        target.register(new Recording<>(TestSchemas.VM, "", VmState.getDefaultInstance(), journal));
        target.register(new Stateful<VcpuState>() {
            public SectionSchema<VcpuState> schema() {
                return TestSchemas.VCPU;
            }

            public String instanceId() {
                return "0";
            }

            public VcpuState saveState() {
                throw new UnsupportedOperationException();
            }

            public void restoreState(VcpuState state) {
                throw new IllegalStateException("KVM_SET_REGS: EINVAL");
            }
        });
        SectionSet saved = SectionSet.of(TestSchemas.VM.encode("", VmState.getDefaultInstance()),
                TestSchemas.VCPU.encode("0", vcpu(1)));
        StateException e = assertThrows(StateException.class, () -> target.restore(saved));
        assertEquals("section kvm.vcpu/0: restore failed after 1 of 2 sections were applied; the VM is in an"
                + " inconsistent state and must not be resumed: KVM_SET_REGS: EINVAL", e.getMessage());
    }

    @Test
    void registrationIsChecked() {
        StateRegistry r = target();
        IllegalArgumentException dup = assertThrows(IllegalArgumentException.class,
                () -> r.register(new Recording<>(TestSchemas.VCPU, "0", VcpuState.getDefaultInstance(), journal)));
        assertEquals("component kvm.vcpu/0 is already registered", dup.getMessage());
        SectionSchema<VcpuState> otherVcpu = SectionSchema.builder("kvm.vcpu", VcpuState.getDefaultInstance())
                .version(2).upgrade(1, s -> s).phase(RestorePhase.VCPU).build();
        assertThrows(IllegalArgumentException.class,
                () -> r.register(new Recording<>(otherVcpu, "7", VcpuState.getDefaultInstance(), journal)));
        assertThrows(IllegalArgumentException.class,
                () -> r.register(new Recording<>(TestSchemas.VCPU, "a/b", VcpuState.getDefaultInstance(), journal)));
        assertEquals(List.of(TestSchemas.UART_V2, TestSchemas.VCPU, TestSchemas.VM), r.schemas());
    }

    @Test
    void saveRefusesANullState() {
        StateRegistry r = new StateRegistry();
        r.register(new Recording<>(TestSchemas.VM, "", null, journal));
        IllegalStateException e = assertThrows(IllegalStateException.class, r::save);
        assertEquals("component kvm.vm returned no state from saveState()", e.getMessage());
    }

    private static SectionSet without(SectionSet set, String name, String instance) {
        return SectionSet.of(set.sections().stream()
                .filter(s -> !(s.name().equals(name) && s.instanceId().equals(instance))).toList());
    }

    private static SectionSet with(SectionSet set, Section extra) {
        List<Section> list = new ArrayList<>(set.sections());
        list.add(extra);
        return SectionSet.of(list);
    }
}
