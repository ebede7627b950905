package dev.ferry.state;

import com.google.protobuf.ByteString;
import com.google.protobuf.Message;
import dev.ferry.state.test.AllTypes;
import dev.ferry.state.test.Nested;
import dev.ferry.state.test.Regs;
import dev.ferry.state.test.VcpuState;
import dev.ferry.state.test.VmState;
import java.util.List;
import java.util.Random;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;

/** jqwik generators for sections, section sets and typed test messages. */
final class Generators {
    private Generators() {
    }

    private static final long[] LONGS = {0, 1, -1, Long.MAX_VALUE, Long.MIN_VALUE, 1L << 53, (1L << 53) + 1,
            0xffff_ffff_ffff_fff0L, 0x1_0000_0000L, 0x10000, 0x10040};
    private static final int[] INTS = {0, 1, -1, Integer.MAX_VALUE, Integer.MIN_VALUE, 0xffff, 0x7f, 0x80};
    private static final float[] FLOATS = {0f, -0f, 1.5f, 0.1f, Float.NaN, Float.POSITIVE_INFINITY,
            Float.NEGATIVE_INFINITY, Float.MIN_VALUE, Float.MAX_VALUE, 16777217f};
    private static final double[] DOUBLES = {0d, -0d, 0.1, 1e300, 1e-300, Double.NaN, Double.POSITIVE_INFINITY,
            Double.NEGATIVE_INFINITY, Double.MIN_VALUE, Double.MAX_VALUE, 9007199254740993d};
    private static final String[] STRINGS = {"", "com1", "quote \" backslash \\ slash /", "tab\tnl\n\u0000",
            "\u00e9\u4e2d\ud83d\ude00", "</script>"};

    /** Section names: the test schemas' names (typed payloads) or random unknown ones. */
    static Arbitrary<String> sectionNames() {
        Arbitrary<String> known = Arbitraries.of(TestSchemas.ALL_TYPES.name(), TestSchemas.VCPU.name(),
                TestSchemas.VM.name(), TestSchemas.UART);
        Arbitrary<String> unknown = Combinators.combine(
                Arbitraries.strings().withCharRange('a', 'z').withCharRange('0', '9').ofLength(1),
                Arbitraries.strings().withCharRange('a', 'z').withCharRange('A', 'Z').withCharRange('0', '9')
                        .withChars('.', '_', '-').ofMaxLength(20))
                .as((a, b) -> a + b);
        return Arbitraries.oneOf(known, unknown);
    }

    static Arbitrary<String> instanceIds() {
        return Arbitraries.oneOf(
                Arbitraries.of("", "0", "1", "com1"),
                Arbitraries.strings().withCharRange('!', '.').withCharRange('0', '~').ofMaxLength(12));
    }

    /** A random section; payloads of known names are usually valid typed messages, otherwise random bytes. */
    static Arbitrary<Section> sections() {
        return Combinators.combine(sectionNames(), instanceIds(), Arbitraries.integers().between(1, 6),
                        Arbitraries.integers().between(1, 6), Arbitraries.of(true, false), Arbitraries.longs())
                .as((name, instance, version, reader, required, seed) -> new Section(name, instance, version,
                        Math.min(reader, version), required, payload(name, new Random(seed))));
    }

    static Arbitrary<SectionSet> sectionSets() {
        return sections().list().ofMaxSize(8).uniqueElements(s -> List.of(s.name(), s.instanceId()))
                .map(SectionSet::of);
    }

    static Arbitrary<AllTypes> allTypes() {
        // From a seed, not Arbitraries.randomValue, so jqwik can re-create the same value when it re-evaluates.
        return Arbitraries.longs().map(seed -> allTypes(new Random(seed)));
    }

    static ByteString payload(String name, Random r) {
        if (r.nextInt(5) == 0) {
            return randomBytes(r, 40);
        }
        Message m;
        if (name.equals(TestSchemas.ALL_TYPES.name())) {
            m = allTypes(r);
        } else if (name.equals(TestSchemas.VCPU.name())) {
            m = VcpuState.newBuilder()
                    .setRegs(Regs.newBuilder().setRip(anyLong(r)).setRsp(anyLong(r)).setRflags(r.nextInt(4096)))
                    .addMsrs(anyLong(r)).addMsrs(anyLong(r)).setApicId(r.nextInt(256)).build();
        } else if (name.equals(TestSchemas.VM.name())) {
            m = VmState.newBuilder().setClockNs(anyLong(r)).setIrqchipMode(r.nextInt(3)).build();
        } else if (name.equals(TestSchemas.UART)) {
            m = dev.ferry.state.test.v2.UartState.newBuilder().setInterruptEnable(r.nextInt(16))
                    .setTxBytesTotal(anyLong(r)).setRxFifo(randomBytes(r, 16)).setRxTimeout(anyLong(r))
                    .setLoopback(r.nextBoolean()).build();
        } else {
            return randomBytes(r, 64);
        }
        return Payloads.serialize(m);
    }

    static AllTypes allTypes(Random r) {
        AllTypes.Builder b = AllTypes.newBuilder();
        if (r.nextBoolean()) b.setI32(anyInt(r));
        if (r.nextBoolean()) b.setI64(anyLong(r));
        if (r.nextBoolean()) b.setU32(anyInt(r));
        if (r.nextBoolean()) b.setU64(anyLong(r));
        if (r.nextBoolean()) b.setS32(anyInt(r));
        if (r.nextBoolean()) b.setS64(anyLong(r));
        if (r.nextBoolean()) b.setF32(anyInt(r));
        if (r.nextBoolean()) b.setF64(anyLong(r));
        if (r.nextBoolean()) b.setSf32(anyInt(r));
        if (r.nextBoolean()) b.setSf64(anyLong(r));
        if (r.nextBoolean()) b.setFl(r.nextBoolean() ? FLOATS[r.nextInt(FLOATS.length)] : r.nextFloat() * 1e6f);
        if (r.nextBoolean()) b.setDb(r.nextBoolean() ? DOUBLES[r.nextInt(DOUBLES.length)] : r.nextGaussian() * 1e9);
        if (r.nextBoolean()) b.setFlag(r.nextBoolean());
        if (r.nextBoolean()) b.setText(anyString(r));
        if (r.nextBoolean()) b.setBlob(randomBytes(r, 48));
        if (r.nextBoolean()) b.setColorValue(r.nextInt(4) == 0 ? 7 : r.nextInt(3));
        if (r.nextBoolean()) b.setNested(nested(r));
        for (int i = r.nextInt(4); i > 0; i--) b.addWords(anyLong(r));
        for (int i = r.nextInt(3); i > 0; i--) b.addItems(nested(r));
        for (int i = r.nextInt(4); i > 0; i--) b.putCounters(anyString(r), anyLong(r));
        for (int i = r.nextInt(3); i > 0; i--) b.putById(anyInt(r), nested(r));
        if (r.nextBoolean()) b.setMaybe(r.nextBoolean() ? 0 : anyInt(r));
        switch (r.nextInt(3)) {
            case 0 -> b.setChoiceNumber(anyLong(r));
            case 1 -> b.setChoiceText(anyString(r));
            default -> { }
        }
        for (int i = r.nextInt(3); i > 0; i--) b.addColorsValue(r.nextInt(5));
        return b.build();
    }

    private static Nested nested(Random r) {
        Nested.Builder b = Nested.newBuilder();
        if (r.nextBoolean()) b.setAddr(anyLong(r));
        if (r.nextBoolean()) b.setData(randomBytes(r, 8));
        if (r.nextBoolean()) b.setLabel(anyString(r));
        return b.build();
    }

    static long anyLong(Random r) {
        return r.nextBoolean() ? LONGS[r.nextInt(LONGS.length)] : r.nextLong() >> r.nextInt(64);
    }

    static int anyInt(Random r) {
        return r.nextBoolean() ? INTS[r.nextInt(INTS.length)] : r.nextInt() >> r.nextInt(32);
    }

    static String anyString(Random r) {
        if (r.nextBoolean()) {
            return STRINGS[r.nextInt(STRINGS.length)];
        }
        StringBuilder sb = new StringBuilder();
        for (int i = r.nextInt(10); i > 0; i--) {
            int cp = r.nextInt(4) == 0 ? r.nextInt(0x2ffff) : 0x20 + r.nextInt(0x5f);
            sb.appendCodePoint(cp >= 0xd800 && cp <= 0xdfff ? '?' : cp); // protobuf strings are valid UTF-8
        }
        return sb.toString();
    }

    static ByteString randomBytes(Random r, int max) {
        byte[] b = new byte[r.nextInt(max + 1)];
        r.nextBytes(b);
        return ByteString.copyFrom(b);
    }
}
