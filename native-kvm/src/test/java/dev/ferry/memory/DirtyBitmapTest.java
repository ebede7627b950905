package dev.ferry.memory;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.memory.GuestMemory.RegionLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.Example;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.Tuple;

/**
 * DirtyBitmap as a value, over random bitmaps on real memfd memory, checked against a model: a BitSet of page
 * numbers (guest-physical address / 4 KiB; the layouts are contiguous from 0).
 */
class DirtyBitmapTest {
    static final long MIB = 1 << 20, PAGE = GuestMemory.PAGE_SIZE;
    /** The layouts VMs have: 2 MiB multiples, so 512, 1024 and 1536 pages, whole 64-bit words. */
    static final List<RegionLayout> MIB_REGIONS = contiguous(2 * MIB, 4 * MIB, 6 * MIB);
    /** allocate() also takes regions whose last word is partial: 37, 131 and 515 pages. */
    static final List<RegionLayout> ODD_REGIONS = contiguous(37 * PAGE, 131 * PAGE, 515 * PAGE);

    /** Raw words of two bitmaps (bits past a region's end included) and an address in guest memory. */
    record Case(List<RegionLayout> layout, long[][] a, long[][] b, long gpa) {
        int pages() {
            return (int) (layout.stream().mapToLong(RegionLayout::size).sum() / PAGE);
        }

        @Override
        public String toString() {
            return "Case[regions of " + layout.stream().map(r -> r.size() / PAGE).toList() + " pages, a="
                    + Arrays.deepToString(a) + ", b=" + Arrays.deepToString(b) + ", gpa=0x" + Long.toHexString(gpa) + "]";
        }
    }

    @Provide
    Arbitrary<Case> cases() {
        return Arbitraries.of(MIB_REGIONS, ODD_REGIONS).flatMap(l -> {
            long bytes = l.stream().mapToLong(RegionLayout::size).sum();
            return Combinators.combine(words(l), words(l), Arbitraries.longs().between(0, bytes - 1))
                    .as((a, b, gpa) -> new Case(l, a, b, gpa));
        });
    }

    /** Clean, all-dirty, random and single-page words: runs that span words and region boundaries, and gaps. */
    static Arbitrary<long[][]> words(List<RegionLayout> layout) {
        Arbitrary<Long> word = Arbitraries.frequencyOf(
                Tuple.of(3, Arbitraries.just(0L)), Tuple.of(3, Arbitraries.just(-1L)), Tuple.of(3, Arbitraries.longs()),
                Tuple.of(1, Arbitraries.integers().between(0, 63).map(b -> 1L << b)));
        int[] sizes = layout.stream().mapToInt(r -> (int) ((r.size() / PAGE + 63) / 64)).toArray();
        return word.list().ofSize(Arrays.stream(sizes).sum()).map(list -> {
            long[][] w = new long[sizes.length][];
            for (int i = 0, next = 0; i < sizes.length; next += sizes[i++]) {
                w[i] = list.subList(next, next + sizes[i]).stream().mapToLong(Long::longValue).toArray();
            }
            return w;
        });
    }

    @Property
    void wordsThenOfIsTheIdentityAndOfDropsBitsPastARegionsEnd(@ForAll("cases") Case c) {
        try (GuestMemory m = GuestMemory.allocate(c.layout())) {
            DirtyBitmap d = DirtyBitmap.of(m, c.a());
            long[][] words = words(d, m);
            assertArrayEquals(masked(c.layout(), c.a()), words);
            assertArrayEquals(words, words(DirtyBitmap.of(m, words), m));
            BitSet expected = model(c.layout(), c.a());
            assertEquals(expected, pages(d));
            assertEquals(expected.cardinality(), d.count());
            for (int p = 0; p < c.pages(); p++) {
                assertEquals(expected.get(p), d.isDirty(p * PAGE + PAGE - 1), "page " + p);
            }
            d.words(0)[0] ^= 1;
            assertEquals(expected, pages(d), "words() is a copy");
        }
    }

    @Example
    void ofRefusesWordsOfAnotherShape() {
        try (GuestMemory m = GuestMemory.allocate(ODD_REGIONS)) {
            assertThrows(IllegalArgumentException.class,
                    () -> DirtyBitmap.of(m, new long[][] {new long[1], new long[3]}));
            assertThrows(IllegalArgumentException.class,
                    () -> DirtyBitmap.of(m, new long[][] {new long[1], new long[3], new long[8]}));
        }
    }

    @Property
    void rangesAreTheMaximalRunsOfDirtyPagesInsideOneRegion(@ForAll("cases") Case c) {
        try (GuestMemory m = GuestMemory.allocate(c.layout())) {
            BitSet covered = new BitSet();
            PageRange prev = null;
            for (PageRange r : DirtyBitmap.of(m, c.a()).ranges()) {
                MemoryRegion region = m.regionOf(r.gpa());
                assertTrue(r.endGpa() <= region.endGpa(), r + " leaves slot " + region.slot());
                if (prev != null) { // a gap, or a new region: else the two would be one run
                    assertTrue(prev.endGpa() < r.gpa() || prev.endGpa() == region.guestPhysAddr(), prev + " then " + r);
                }
                covered.set((int) (r.gpa() / PAGE), (int) (r.endGpa() / PAGE));
                prev = r;
            }
            assertEquals(model(c.layout(), c.a()), covered);
        }
    }

    @Property
    void orAndNotAndComplementAreUnionDifferenceAndComplement(@ForAll("cases") Case c) {
        try (GuestMemory m = GuestMemory.allocate(c.layout())) {
            BitSet a = model(c.layout(), c.a()), b = model(c.layout(), c.b()), all = new BitSet();
            all.set(0, c.pages());
            DirtyBitmap union = DirtyBitmap.of(m, c.a());
            union.or(DirtyBitmap.of(m, c.b()));
            BitSet aOrB = (BitSet) a.clone();
            aOrB.or(b);
            assertEquals(aOrB, pages(union));
            DirtyBitmap difference = DirtyBitmap.of(m, c.a());
            difference.andNot(DirtyBitmap.of(m, c.b()));
            assertEquals(minus(a, b), pages(difference));

            DirtyBitmap d = DirtyBitmap.of(m, c.a());
            DirtyBitmap complement = d.complement();
            assertEquals(minus(all, a), pages(complement));
            assertEquals(c.pages() - a.cardinality(), complement.count(), "no bits past a region's end");
            assertEquals(a, pages(d), "complement() leaves its operand alone");
            assertEquals(a, pages(complement.complement()));
            assertEquals(all, pages(DirtyBitmap.empty(m).complement()));
            assertEquals(all, pages(DirtyBitmap.full(m)));
        }
    }

    @Property
    void markDirtyAndClearChangeOnlyThePageHoldingTheAddress(@ForAll("cases") Case c) {
        try (GuestMemory m = GuestMemory.allocate(c.layout())) {
            DirtyBitmap d = DirtyBitmap.of(m, c.a());
            BitSet expected = model(c.layout(), c.a());
            int page = (int) (c.gpa() / PAGE);
            d.markDirty(c.gpa());
            expected.set(page);
            assertEquals(expected, pages(d));
            assertTrue(d.isDirty(page * PAGE));
            d.clear(c.gpa());
            expected.clear(page);
            assertEquals(expected, pages(d));
            assertFalse(d.isDirty(c.gpa()));
            long end = m.totalBytes();
            assertThrows(IllegalArgumentException.class, () -> d.markDirty(end));
            assertThrows(IllegalArgumentException.class, () -> d.clear(end));
            assertThrows(IllegalArgumentException.class, () -> d.isDirty(-1));
        }
    }

    /** takeRun from the case's address: the model's next dirty page, its run capped at the region end and the limit. */
    @Property
    void takeRunRemovesTheFirstRunAtOrAfterTheAddress(@ForAll("cases") Case c,
            @ForAll @net.jqwik.api.constraints.IntRange(min = 1, max = 100) int max) {
        try (GuestMemory m = GuestMemory.allocate(c.layout())) {
            DirtyBitmap d = DirtyBitmap.of(m, c.a());
            BitSet expected = model(c.layout(), c.a());
            int first = expected.nextSetBit((int) (c.gpa() / PAGE));
            PageRange run = d.takeRun(c.gpa(), max);
            if (first < 0) {
                assertEquals(null, run);
                assertEquals(expected, pages(d));
                return;
            }
            MemoryRegion region = m.regionOf(first * PAGE);
            int end = Math.min(expected.nextClearBit(first), (int) Math.min(region.endGpa() / PAGE, (long) first + max));
            assertEquals(new PageRange(first * PAGE, end - first), run);
            expected.clear(first, end);
            assertEquals(expected, pages(d));
        }
    }

    /** Writes the pages of {@code a}, punches holes at the pages of {@code b}: the data is what remains. */
    @Property(tries = 30)
    void populatedIsExactlyThePagesHoldingData(@ForAll("cases") Case c) {
        try (GuestMemory m = GuestMemory.allocate(c.layout())) {
            BitSet written = model(c.layout(), c.a()), punched = model(c.layout(), c.b());
            written.stream().forEach(p -> m.putLong(p * PAGE + 8, p + 1));
            punched.stream().forEach(p -> {
                MemoryRegion r = m.regionOf(p * PAGE);
                r.mapping().discard(p * PAGE - r.guestPhysAddr(), PAGE);
            });
            BitSet data = minus(written, punched);
            assertEquals(data, pages(DirtyBitmap.populated(m)));
            // Pages given as known are kept without looking, punched or not; only the others are searched.
            BitSet dataOrKnown = (BitSet) data.clone();
            dataOrKnown.or(punched);
            assertEquals(dataOrKnown, pages(DirtyBitmap.populated(m, DirtyBitmap.of(m, c.b()))));
        }
    }

    static List<RegionLayout> contiguous(long... sizes) {
        List<RegionLayout> out = new ArrayList<>();
        long gpa = 0;
        for (int i = 0; i < sizes.length; gpa += sizes[i++]) {
            out.add(new RegionLayout(i, gpa, sizes[i]));
        }
        return out;
    }

    /** The pages set in {@code words}, counting only bits inside their region. */
    static BitSet model(List<RegionLayout> layout, long[][] words) {
        BitSet s = new BitSet();
        for (int i = 0; i < layout.size(); i++) {
            for (long p = 0; p < layout.get(i).size() / PAGE; p++) {
                if ((words[i][(int) (p / 64)] >>> (p % 64) & 1) != 0) {
                    s.set((int) (layout.get(i).guestPhysAddr() / PAGE + p));
                }
            }
        }
        return s;
    }

    /** {@code words} without the bits past each region's end. */
    static long[][] masked(List<RegionLayout> layout, long[][] words) {
        long[][] out = new long[words.length][];
        for (int i = 0; i < words.length; i++) {
            out[i] = words[i].clone();
            long pages = layout.get(i).size() / PAGE;
            for (long p = pages; p < out[i].length * 64L; p++) {
                out[i][(int) (p / 64)] &= ~(1L << (p % 64));
            }
        }
        return out;
    }

    /** The dirty pages as forEachDirtyPage reports them, checking they come page-aligned and ascending. */
    static BitSet pages(DirtyBitmap d) {
        BitSet s = new BitSet();
        long[] last = {-1};
        d.forEachDirtyPage(gpa -> {
            assertTrue(gpa % PAGE == 0 && gpa > last[0], Long.toHexString(gpa) + " after " + Long.toHexString(last[0]));
            last[0] = gpa;
            s.set((int) (gpa / PAGE));
        });
        return s;
    }

    static long[][] words(DirtyBitmap d, GuestMemory m) {
        long[][] w = new long[m.regions().size()][];
        for (int i = 0; i < w.length; i++) {
            w[i] = d.words(i);
        }
        return w;
    }

    static BitSet minus(BitSet x, BitSet y) {
        BitSet r = (BitSet) x.clone();
        r.andNot(y);
        return r;
    }
}
