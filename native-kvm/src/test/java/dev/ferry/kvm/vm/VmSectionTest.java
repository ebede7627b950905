package dev.ferry.kvm.vm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.ferry.kvm.state.v1.IrqchipState;
import dev.ferry.kvm.state.v1.PitChannelState;
import dev.ferry.kvm.state.v1.VmState;
import dev.ferry.kvm.sys.IoapicRedirectionBits;
import dev.ferry.kvm.sys.KvmClockData;
import dev.ferry.kvm.sys.KvmIoapicState;
import dev.ferry.kvm.sys.KvmIrqchip;
import dev.ferry.kvm.sys.KvmPicState;
import dev.ferry.kvm.sys.KvmPitState2;
import dev.ferry.state.Section;
import dev.ferry.state.StateException;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Section "kvm.vm" without a VM: every kernel field goes to a typed field and back unchanged, version-1 sections
 * (raw kernel structures) load through the upgrade step, and validation names the field it refuses.
 */
class VmSectionTest {
    private final VmSection section = new VmSection(null); // validation touches no VM

    /** Random kernel structures, padding zeroed (it carries no state and is not kept). */
    static KvmPitState2 randomPit(Random r) {
        KvmPitState2 pit = new KvmPitState2();
        pit.fromBytes(bytes(r, pit.size()));
        pit.reserved = new int[pit.reserved.length];
        for (var c : pit.channels) {
            c.count = r.nextInt(0x10001);
        }
        return pit;
    }

    static KvmPicState randomPic(Random r) {
        KvmPicState pic = new KvmPicState();
        pic.fromBytes(bytes(r, pic.size()));
        return pic;
    }

    static KvmIoapicState randomIoapic(Random r) {
        KvmIoapicState io = new KvmIoapicState();
        io.fromBytes(bytes(r, io.size()));
        io.pad = 0;
        return io;
    }

    private static byte[] bytes(Random r, int n) {
        byte[] b = new byte[n];
        r.nextBytes(b);
        return b;
    }

    @Test
    void everyKernelFieldSurvivesTheTypedForm() {
        Random r = new Random(11);
        for (int i = 0; i < 200; i++) {
            KvmPitState2 pit = randomPit(r);
            assertArrayEquals(pit.toBytes(), VmSection.pit(VmSection.pit(pit)).toBytes());
            KvmPicState pic = randomPic(r);
            assertArrayEquals(pic.toBytes(), VmSection.pic(VmSection.pic(pic)).toBytes());
            KvmIoapicState io = randomIoapic(r);
            assertArrayEquals(io.toBytes(), VmSection.ioapic(VmSection.ioapic(io)).toBytes());
        }
    }

    @Test
    void ioapicEntriesAreDecodedIntoTheirFields() {
        long bits = 0;
        bits = IoapicRedirectionBits.VECTOR.set(bits, 0x31);
        bits = IoapicRedirectionBits.DELIVERY_MODE.set(bits, 5);
        bits = IoapicRedirectionBits.MASK.set(bits, 1);
        bits = IoapicRedirectionBits.DEST_ID.set(bits, 0xfe);
        bits |= 1L << 40; // a reserved bit
        var e = VmSection.redirection(bits);
        assertEquals(0x31, e.getVector());
        assertEquals(5, e.getDeliveryMode());
        assertEquals(1, e.getMask());
        assertEquals(0, e.getTrigMode());
        assertEquals(0xfe, e.getDestId());
        assertEquals(1L << 40, e.getReservedBits());
        assertEquals(bits, VmSection.bits(e));
    }

    /** A section as the version-1 build wrote it: the raw structures; the upgrade step types them. */
    @Test
    @SuppressWarnings("deprecation")
    void version1SectionsLoadTyped() throws StateException {
        Random r = new Random(5);
        KvmPitState2 pit = randomPit(r);
        pit.channels[1].count = 0x10000;
        pit.channels[1].mode = 3;
        KvmPicState master = randomPic(r);
        KvmPicState slave = randomPic(r);
        KvmIoapicState io = randomIoapic(r);
        KvmIrqchip c0 = new KvmIrqchip(0);
        c0.setPic(master);
        KvmIrqchip c1 = new KvmIrqchip(1);
        c1.setPic(slave);
        KvmIrqchip c2 = new KvmIrqchip(2);
        c2.setIoapic(io);
        VmState v1 = VmState.newBuilder()
                .addIrqchips(IrqchipState.newBuilder().setChipId(0).setData(ByteString.copyFrom(c0.chip)))
                .addIrqchips(IrqchipState.newBuilder().setChipId(1).setData(ByteString.copyFrom(c1.chip)))
                .addIrqchips(IrqchipState.newBuilder().setChipId(2).setData(ByteString.copyFrom(c2.chip)))
                .setPit2(ByteString.copyFrom(pit.toBytes()))
                .setClock(dev.ferry.kvm.state.v1.ClockState.newBuilder().setClockNs(123_456_789L).setFlags(2))
                .build();
        VmState v2 = VmSection.SCHEMA.decode(new Section("kvm.vm", "", 1, 1, true, v1.toByteString()));

        assertEquals(0, v2.getIrqchipsCount(), "the raw fields are gone after the upgrade");
        assertTrue(v2.getPit2().isEmpty());
        assertEquals(0x10000, v2.getPit().getChannels(1).getCount());
        assertEquals(3, v2.getPit().getChannels(1).getMode());
        assertArrayEquals(pit.toBytes(), VmSection.pit(v2.getPit()).toBytes());
        assertArrayEquals(master.toBytes(), VmSection.pic(v2.getPicMaster()).toBytes());
        assertArrayEquals(slave.toBytes(), VmSection.pic(v2.getPicSlave()).toBytes());
        assertArrayEquals(io.toBytes(), VmSection.ioapic(v2.getIoapic()).toBytes());
        assertEquals(123_456_789L, v2.getClock().getClockNs());
        section.validateState(v2); // what a version-1 build saved is valid today

        VmState broken = v1.toBuilder().setIrqchips(2, IrqchipState.newBuilder().setChipId(2)
                .setData(ByteString.copyFrom(new byte[100]))).build();
        StateException e = assertThrows(StateException.class,
                () -> VmSection.SCHEMA.decode(new Section("kvm.vm", "", 1, 1, true, broken.toByteString())));
        assertTrue(e.getMessage().contains("kvm.vm") && e.getMessage().contains("irqchip 2 has 100 bytes"),
                e.getMessage());
    }

    @Test
    void validationNamesTheFieldItRefuses() throws StateException {
        Random r = new Random(3);
        VmState good = VmState.newBuilder().setPit(VmSection.pit(randomPit(r)))
                .setPicMaster(VmSection.pic(randomPic(r))).setPicSlave(VmSection.pic(randomPic(r)))
                .setIoapic(VmSection.ioapic(randomIoapic(r))).setClock(VmSection.clock(new KvmClockData())).build();
        section.validateState(good);

        assertRefused(good.toBuilder().setPit(good.getPit().toBuilder().setChannels(1,
                good.getPit().getChannels(1).toBuilder().setMode(300))).build(), "pit.channels[1].mode: 300");
        assertRefused(good.toBuilder().setPit(good.getPit().toBuilder().setChannels(0,
                good.getPit().getChannels(0).toBuilder().setCount(0x10001))).build(), "pit.channels[0].count: 65537");
        assertRefused(good.toBuilder().setPit(good.getPit().toBuilder().setChannels(2,
                PitChannelState.newBuilder().setLatchedCount(70000))).build(), "pit.channels[2].latched_count: 70000");
        assertRefused(good.toBuilder().setPit(good.getPit().toBuilder().removeChannels(2)).build(),
                "pit.channels: 2 channels");
        assertRefused(good.toBuilder().setPicSlave(good.getPicSlave().toBuilder().setImr(256)).build(),
                "pic_slave.imr: 256");
        assertRefused(good.toBuilder().setIoapic(good.getIoapic().toBuilder().setRedirtbl(7,
                good.getIoapic().getRedirtbl(7).toBuilder().setDeliveryMode(9))).build(),
                "ioapic.redirtbl[7].delivery_mode: 9");
        assertRefused(good.toBuilder().setIoapic(good.getIoapic().toBuilder().setRedirtbl(0,
                good.getIoapic().getRedirtbl(0).toBuilder().setReservedBits(1))).build(),
                "ioapic.redirtbl[0].reserved_bits");
        assertRefused(good.toBuilder().setIoapic(good.getIoapic().toBuilder().removeRedirtbl(23)).build(),
                "ioapic.redirtbl: 23 entries");
        assertRefused(good.toBuilder().clearPicMaster().clearClock().build(), "pic_master is missing; clock is missing");
    }

    private void assertRefused(VmState s, String expected) {
        StateException e = assertThrows(StateException.class, () -> section.validateState(s));
        assertTrue(e.getMessage().startsWith("section kvm.vm: "), e.getMessage());
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }
}
