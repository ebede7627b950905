package dev.ferry.state;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnknownFieldSet;
import dev.ferry.state.test.AllTypes;
import dev.ferry.state.test.Color;
import dev.ferry.state.test.Nested;
import dev.ferry.state.test.Regs;
import dev.ferry.state.test.VcpuState;
import java.util.List;
import org.junit.jupiter.api.Test;

class StateDiffTest {
    private static final List<SectionSchema<?>> SCHEMAS = TestSchemas.all();

    private static Section vcpu(String id, long rip, long... msrs) {
        VcpuState.Builder b = VcpuState.newBuilder().setRegs(Regs.newBuilder().setRip(rip).setRsp(0x7000));
        for (long m : msrs) {
            b.addMsrs(m);
        }
        return TestSchemas.VCPU.encode(id, b.build());
    }

    private static Section all(AllTypes m) {
        return TestSchemas.ALL_TYPES.encode("x", m);
    }

    @Test
    void identicalStreamsHaveNoDifferences() {
        SectionSet a = SectionSet.of(vcpu("0", 1), vcpu("1", 2));
        assertEquals(List.of(), StateDiff.diff(a, a, SCHEMAS));
        SectionSet reordered = SectionSet.of(vcpu("1", 2), vcpu("0", 1));
        assertEquals(List.of(), StateDiff.diff(a, reordered, SCHEMAS), "order is not a difference");
    }

    @Test
    void sectionsAndFields() {
        SectionSet a = SectionSet.of(vcpu("0", 0x10000, 1, 2), vcpu("1", 5),
                new Section("device.rtc", "", 1, 1, true, ByteString.EMPTY));
        SectionSet b = SectionSet.of(vcpu("0", 0x10040, 1, 2, 0x1b), vcpu("1", 5),
                new Section("device.serial", "com1", 1, 1, true, ByteString.EMPTY));
        assertEquals(List.of(
                "kvm.vcpu/0: regs.rip: 0x10000 -> 0x10040",
                "kvm.vcpu/0: msrs[2]: <absent> -> 0x1b",
                "- device.rtc (only in A)",
                "+ device.serial/com1 (only in B)"), StateDiff.diff(a, b, SCHEMAS));
    }

    /** An old section is compared as a restore reads it: upgraded, so a changed unit is not a difference. */
    @Test
    void olderSectionsAreComparedUpgraded() {
        Section v1 = TestSchemas.UART_V1.encode("com1", dev.ferry.state.test.v1.UartState.newBuilder()
                .setRxTimeout(2500).setLcr(3).build());
        Section v2 = TestSchemas.UART_V2.encode("com1", dev.ferry.state.test.v2.UartState.newBuilder()
                .setRxTimeout(2_500_000).setLcr(7).build());
        List<String> lines = StateDiff.diff(SectionSet.of(v1), SectionSet.of(v2), List.of(TestSchemas.UART_V2));
        assertEquals("test.uart/com1: section version: 1 -> 2", lines.get(0));
        assertEquals("test.uart/com1: lcr: 3 -> 7", lines.get(lines.size() - 1), lines.toString());
        assertEquals(List.of(), lines.stream().filter(l -> l.contains("rxTimeout")).toList(), "microseconds upgraded");
    }

    @Test
    void headerDifferences() {
        Section a = vcpu("0", 1);
        Section b = new Section(a.name(), a.instanceId(), 3, 2, false, a.payload());
        assertEquals(List.of(
                "kvm.vcpu/0: section version: 1 -> 3",
                "kvm.vcpu/0: section minReaderVersion: 1 -> 2",
                "kvm.vcpu/0: section required: true -> false"), StateDiff.diff(SectionSet.of(a), SectionSet.of(b),
                SCHEMAS));
    }

    @Test
    void valueFormats() {
        AllTypes a = AllTypes.newBuilder().setI64(-5).setU32(-1).setText("a\"b").setBlob(ByteString.copyFromUtf8("hi"))
                .setColor(Color.COLOR_RED).putCounters("gsi4", 4).putById(7, Nested.newBuilder().setAddr(1).build())
                .setMaybe(0).build();
        AllTypes b = AllTypes.newBuilder().setI64(6).setU32(1).setText("a\nb")
                .setBlob(ByteString.copyFrom(new byte[40])).setColorValue(9).putCounters("gsi4", 5)
                .putCounters("gsi5", 1).putById(7, Nested.newBuilder().setAddr(2).build())
                .setNested(Nested.newBuilder().setLabel("new")).setChoiceText("t").build();
        assertEquals(List.of(
                "test.all-types/x: i64: -5 -> 6",
                "test.all-types/x: u32: 4294967295 -> 1",
                "test.all-types/x: text: \"a\\\"b\" -> \"a\\u000ab\"",
                "test.all-types/x: blob: <hex 6869> -> <40 bytes> (first difference at byte 0)",
                "test.all-types/x: color: COLOR_RED -> 9",
                "test.all-types/x: nested: <absent> -> <present>",
                "test.all-types/x: nested.label: \"\" -> \"new\"",
                "test.all-types/x: counters[\"gsi4\"]: 0x4 -> 0x5",
                "test.all-types/x: counters[\"gsi5\"]: <absent> -> 0x1",
                "test.all-types/x: byId[7].addr: 0x1 -> 0x2",
                "test.all-types/x: maybe: 0 -> <absent>",
                "test.all-types/x: choiceText: <absent> -> \"t\""),
                StateDiff.diff(SectionSet.of(all(a)), SectionSet.of(all(b)), SCHEMAS));
    }

    @Test
    void sectionsWithoutSchemaOrUnparsableAreComparedAsBytes() {
        SectionSet a = SectionSet.of(new Section("device.blob", "0", 1, 1, true, ByteString.copyFrom(new byte[512])),
                new Section("kvm.vcpu", "0", 1, 1, true, ByteString.copyFrom(new byte[] {8})));
        byte[] changed = new byte[512];
        changed[17] = 1;
        SectionSet b = SectionSet.of(new Section("device.blob", "0", 1, 1, true, ByteString.copyFrom(changed)),
                new Section("kvm.vcpu", "0", 1, 1, true, ByteString.copyFrom(new byte[] {8, 1})));
        assertEquals(List.of(
                "device.blob/0: payload: 512 bytes -> 512 bytes (first difference at byte 17)",
                "kvm.vcpu/0: payload: 1 bytes -> 2 bytes (one is a prefix of the other)"),
                StateDiff.diff(a, b, SCHEMAS));
    }

    @Test
    void unknownFieldsAreReported() {
        VcpuState base = VcpuState.newBuilder().setApicId(1).build();
        VcpuState extra = base.toBuilder().setUnknownFields(UnknownFieldSet.newBuilder()
                .addField(9, UnknownFieldSet.Field.newBuilder().addVarint(3).build()).build()).build();
        assertEquals(List.of("kvm.vcpu/0: unknown fields differ (field numbers [9], not in this build's schema)"),
                StateDiff.diff(SectionSet.of(TestSchemas.VCPU.encode("0", base)),
                        SectionSet.of(TestSchemas.VCPU.encode("0", extra)), SCHEMAS));
    }
}
