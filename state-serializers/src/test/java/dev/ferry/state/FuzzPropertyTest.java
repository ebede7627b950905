package dev.ferry.state;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.protobuf.ByteString;
import dev.ferry.state.test.Regs;
import dev.ferry.state.test.VcpuState;
import dev.ferry.state.test.VmState;
import dev.ferry.state.test.v2.UartState;
import dev.ferry.state.v1.StateStream;
import java.io.ByteArrayInputStream;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.statistics.Statistics;
import net.jqwik.api.statistics.StatisticsReport;

/**
 * Damaged input never gets past decode/restore as anything but a {@link StateException}, and never half-applies.
 */
class FuzzPropertyTest {

    /** An encoded stream and a seed for choosing where to damage it. */
    record Encoded(SectionSet set, byte[] bytes, long seed) {
        /** A fresh random source each time, so a re-run (shrinking, reporting) damages the same way. */
        Random random() {
            return new Random(seed);
        }

        @Override
        public String toString() {
            return set + " (" + bytes.length + " bytes)";
        }
    }

    @Provide
    Arbitrary<Encoded> encoded() {
        return Combinators.combine(Generators.sectionSets(), Arbitraries.longs())
                .as((set, seed) -> new Encoded(set, StateCodec.encode(set), seed));
    }

    @Property(tries = 1500)
    void everyTruncationIsRefused(@ForAll("encoded") Encoded e) {
        int cut = e.random().nextInt(e.bytes().length);
        byte[] truncated = Arrays.copyOf(e.bytes(), cut);
        assertOnlyStateException(() -> StateCodec.decode(truncated), true);
        assertOnlyStateException(() -> StateCodec.read(new ByteArrayInputStream(truncated)), true);
    }

    /** CRC32C detects every single-bit error in the payload; header bits are all checked exactly. */
    @Property(tries = 3000)
    void everySingleBitFlipIsRefused(@ForAll("encoded") Encoded e) {
        byte[] flipped = e.bytes().clone();
        int bit = e.random().nextInt(flipped.length * 8);
        flipped[bit / 8] ^= (byte) (1 << (bit % 8));
        assertOnlyStateException(() -> StateCodec.decode(flipped), true);
    }

    /** Heavier damage: either refused, or (by an astronomically unlikely CRC collision) decoded unchanged. */
    @Property(tries = 1500)
    void randomDamageIsRefusedOrHarmless(@ForAll("encoded") Encoded e) {
        Random r = e.random();
        byte[] damaged = e.bytes().clone();
        switch (r.nextInt(3)) {
            case 0 -> { // overwrite a few bytes
                for (int i = 1 + r.nextInt(8); i > 0; i--) {
                    damaged[r.nextInt(damaged.length)] = (byte) r.nextInt(256);
                }
            }
            case 1 -> { // append garbage
                damaged = Arrays.copyOf(damaged, damaged.length + 1 + r.nextInt(16));
            }
            default -> { // drop a byte in the middle
                int at = r.nextInt(damaged.length);
                byte[] shorter = new byte[damaged.length - 1];
                System.arraycopy(damaged, 0, shorter, 0, at);
                System.arraycopy(damaged, at + 1, shorter, at, damaged.length - at - 1);
                damaged = shorter;
            }
        }
        byte[] input = damaged;
        try {
            assertEquals(e.set(), StateCodec.decode(input), "damage not detected but content changed");
        } catch (StateException expected) {
            // refused: fine
        } catch (RuntimeException other) {
            fail("decode threw " + other, other);
        }
    }

    /**
     * Streams with a valid checksum but wrong versions, headers or payloads: decode + restore either restores every
     * component or throws StateException having restored none. Both outcomes must occur often enough for this to
     * prove something.
     */
    @Property(tries = 2000)
    @StatisticsReport(StatisticsReport.StatisticsReportMode.OFF)
    void wrongVersionsAreRefusedOrRestoredWhole(@ForAll("seeds") long seed) {
        Random r = new Random(seed);
        List<String> journal = Recording.journal();
        SectionSet saved = source(r, journal).save();
        StateStream.Builder stream = StateCodec.toStream(saved).toBuilder();
        for (int n = 1 + r.nextInt(3); n > 0; n--) {
            mutate(stream, r);
        }
        byte[] bytes = StateCodecTest.envelope(stream.build().toByteArray());
        if (r.nextInt(10) == 0) {
            java.nio.ByteBuffer.wrap(bytes).putInt(8, r.nextInt(4)); // envelope version
        }

        journal.clear();
        StateRegistry target = target(journal);
        try {
            target.restore(StateCodec.decode(bytes));
            assertEquals(4, journal.size(), "restore succeeded, so every component must have been restored");
            Statistics.collect("restored");
        } catch (StateException expected) {
            assertEquals(List.of(), journal, "refused after restoring some components: " + expected.getMessage());
            Statistics.collect("refused");
        } catch (RuntimeException other) {
            fail("restore threw " + other, other);
        }
        Statistics.coverage(c -> {
            c.check("restored").percentage(p -> p > 5);
            c.check("refused").percentage(p -> p > 50);
        });
    }

    @Provide
    Arbitrary<Long> seeds() {
        return Arbitraries.longs();
    }

    private static final int[] VERSIONS = {0, 1, 1, 2, 2, 3, 4, -1};

    private static void mutate(StateStream.Builder stream, Random r) {
        int kind = r.nextInt(8);
        if (kind == 0) {
            stream.setFormatVersion(VERSIONS[r.nextInt(VERSIONS.length)]);
            return;
        }
        if (stream.getSectionsCount() == 0) {
            return;
        }
        int i = r.nextInt(stream.getSectionsCount());
        dev.ferry.state.v1.Section.Builder s = stream.getSections(i).toBuilder();
        switch (kind) {
            case 1 -> s.setVersion(VERSIONS[r.nextInt(VERSIONS.length)]);
            case 2 -> s.setMinReaderVersion(VERSIONS[r.nextInt(VERSIONS.length)]);
            case 3 -> s.setRequired(!s.getRequired());
            case 4 -> {
                byte[] p = s.getPayload().toByteArray();
                if (p.length > 0) {
                    p[r.nextInt(p.length)] ^= (byte) (1 + r.nextInt(255));
                }
                s.setPayload(ByteString.copyFrom(p));
            }
            case 5 -> s.setName(r.nextBoolean() ? "device.unknown" : "kvm.vcpu").setInstanceId(r.nextBoolean() ? "9" : "");
            case 6 -> {
                stream.removeSections(i);
                return;
            }
            default -> {
                stream.addSections(s.build()); // duplicate
                return;
            }
        }
        stream.setSections(i, s);
    }

    static StateRegistry source(Random r, List<String> journal) {
        StateRegistry reg = new StateRegistry();
        reg.register(new Recording<>(TestSchemas.VM, "", VmState.newBuilder().setClockNs(r.nextLong()).build(),
                journal));
        for (String id : List.of("0", "1")) {
            reg.register(new Recording<>(TestSchemas.VCPU, id, VcpuState.newBuilder()
                    .setRegs(Regs.newBuilder().setRip(r.nextLong())).addMsrs(r.nextLong()).build(), journal));
        }
        reg.register(new Recording<>(TestSchemas.UART_V2, "com1", UartState.newBuilder()
                .setRxFifo(Generators.randomBytes(r, 16)).setRxTimeout(r.nextInt(1000)).build(), journal));
        return reg;
    }

    static StateRegistry target(List<String> journal) {
        StateRegistry reg = new StateRegistry();
        reg.register(new Recording<>(TestSchemas.VM, "", VmState.getDefaultInstance(), journal));
        reg.register(new Recording<>(TestSchemas.VCPU, "0", VcpuState.getDefaultInstance(), journal));
        reg.register(new Recording<>(TestSchemas.VCPU, "1", VcpuState.getDefaultInstance(), journal));
        reg.register(new Recording<>(TestSchemas.UART_V2, "com1", UartState.getDefaultInstance(), journal));
        return reg;
    }

    private interface Decode {
        Object run() throws Exception;
    }

    private static void assertOnlyStateException(Decode decode, boolean mustFail) {
        try {
            Object result = decode.run();
            if (mustFail) {
                fail("damaged input was accepted: " + result);
            }
        } catch (StateException expected) {
            // the only acceptable failure
        } catch (Exception other) {
            fail("expected a StateException, got " + other, other);
        }
    }

    private static final String INSERTS = "{}[]\",:0-9eE.x \u0000\\";

    /** Damaged JSON: refused with a StateException or parsed into some valid set; never another exception. */
    @Property(tries = 1500)
    void damagedJsonIsRefusedCleanly(@ForAll("encoded") Encoded e) {
        Random r = e.random();
        StringBuilder json = new StringBuilder(StateJson.toJson(e.set(), TestSchemas.all()));
        for (int n = 1 + r.nextInt(3); n > 0; n--) {
            int at = r.nextInt(json.length());
            switch (r.nextInt(3)) {
                case 0 -> json.deleteCharAt(at);
                case 1 -> json.insert(at, INSERTS.charAt(r.nextInt(INSERTS.length())));
                default -> json.setCharAt(at, (char) (0x20 + r.nextInt(0x60)));
            }
        }
        try {
            StateJson.fromJson(json.toString(), TestSchemas.all());
        } catch (StateException refused) {
            // fine
        } catch (RuntimeException other) {
            fail("fromJson threw " + other + " for\n" + json, other);
        }
    }

    /** Any decodable stream, however odd its payloads, can be shown as JSON and diffed. */
    @Property(tries = 500)
    void toolsWorkOnAnyDecodableStream(@ForAll("encoded") Encoded e) {
        byte[] damaged = e.bytes().clone();
        if (damaged.length > StateCodec.HEADER_BYTES) {
            damaged[StateCodec.HEADER_BYTES + e.random().nextInt(damaged.length - StateCodec.HEADER_BYTES)] ^= 0x10;
        }
        SectionSet set;
        try {
            // re-envelope so the damage passes the checksum and reaches the section parsers
            set = StateCodec.decode(StateCodecTest.envelope(Arrays.copyOfRange(damaged, StateCodec.HEADER_BYTES,
                    damaged.length)));
        } catch (StateException refused) {
            return;
        }
        StateJson.toJson(set, TestSchemas.all());
        StateDiff.diff(e.set(), set, TestSchemas.all());
    }

    /** Sanity check of the fuzz harness itself: undamaged input decodes. */
    @Property(tries = 50)
    void undamagedInputDecodes(@ForAll("encoded") Encoded e) throws StateException {
        assertEquals(e.set(), StateCodec.decode(e.bytes()));
        assertThrows(StateException.class, () -> StateCodec.decode(Arrays.copyOf(e.bytes(), 0)));
    }
}
