package dev.ferry.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.ferry.backends.Backends;
import dev.ferry.kvm.state.v1.ClockState;
import dev.ferry.kvm.state.v1.IoapicRedirection;
import dev.ferry.kvm.state.v1.IoapicState;
import dev.ferry.kvm.state.v1.PicState;
import dev.ferry.kvm.state.v1.PitChannelState;
import dev.ferry.kvm.state.v1.PitState;
import dev.ferry.kvm.state.v1.VmState;
import dev.ferry.state.Section;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateCodec;
import dev.ferry.vm.Snapshot;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code ferry state diff} shows which kernel field of the PIT, PIC or IOAPIC changed, not a byte offset. */
class StateDiffCliTest {
    @TempDir
    Path dir;

    static VmState vmState(int pitCount, int picImr, int pin4Mask) {
        PitState.Builder pit = PitState.newBuilder().setFlags(0);
        for (int i = 0; i < 3; i++) {
            pit.addChannels(PitChannelState.newBuilder().setCount(i == 0 ? pitCount : 0x10000).setRwMode(3)
                    .setMode(i == 0 ? 2 : 3).setGate(i == 2 ? 0 : 1));
        }
        IoapicState.Builder io = IoapicState.newBuilder().setBaseAddress(0xfec00000L);
        for (int i = 0; i < 24; i++) {
            io.addRedirtbl(IoapicRedirection.newBuilder().setMask(i == 4 ? pin4Mask : 1));
        }
        return VmState.newBuilder().setPit(pit).setPicMaster(PicState.newBuilder().setImr(picImr).setElcrMask(0xf8))
                .setPicSlave(PicState.newBuilder().setElcrMask(0xde)).setIoapic(io)
                .setClock(ClockState.newBuilder().setClockNs(1_000_000)).build();
    }

    /** A snapshot directory holding just the state file with this kvm.vm section. */
    Path snapshot(String name, VmState s) throws Exception {
        SectionSchema<?> schema = Backends.allSchemas().stream().filter(x -> x.name().equals("kvm.vm")).findFirst()
                .orElseThrow();
        Path d = Files.createDirectories(dir.resolve(name));
        Files.write(d.resolve(Snapshot.STATE_FILE), StateCodec.encode(SectionSet.of(new Section("kvm.vm", "",
                schema.version(), schema.minReaderVersion(), true, s.toByteString()))));
        return d;
    }

    @Test
    void aChangedPitCountIsShownByName() throws Exception {
        Path a = snapshot("a", vmState(0x10000, 0, 1));
        Path b = snapshot("b", vmState(1193, 0, 1));
        Cli.Result r = Cli.run("state", "diff", a.toString(), b.toString());
        assertEquals(1, r.exit(), r.err());
        assertEquals(List.of("kvm.vm: pit.channels[0].count: 65536 -> 1193"), r.out().strip().lines().toList());
    }

    @Test
    void picAndIoapicFieldsAreShownByName() throws Exception {
        Cli.Result r = Cli.run("state", "diff", snapshot("a", vmState(5, 0, 1)).toString(),
                snapshot("b", vmState(5, 0xfb, 0)).toString());
        assertEquals(1, r.exit(), r.err());
        assertEquals(List.of("kvm.vm: picMaster.imr: 0 -> 251", "kvm.vm: ioapic.redirtbl[4].mask: 1 -> 0"),
                r.out().strip().lines().toList());
    }
}
