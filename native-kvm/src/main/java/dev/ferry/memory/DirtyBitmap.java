package dev.ferry.memory;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.LongConsumer;

/**
 * Which guest pages were written, one bit per 4 KiB page per region, as KVM reports them. A value
 * type: it owns plain Java arrays copied out of the kernel's bitmap.
 */
public final class DirtyBitmap {
    private final GuestMemory memory;
    private final List<MemoryRegion> regions;
    private final long[][] bits;

    DirtyBitmap(GuestMemory memory, long[][] bits) {
        this.memory = memory;
        this.regions = memory.regions();
        this.bits = bits;
    }

    /** An all-clean bitmap for {@code memory}. */
    public static DirtyBitmap empty(GuestMemory memory) {
        long[][] b = new long[memory.regions().size()][];
        for (int i = 0; i < b.length; i++) {
            b[i] = new long[(int) ((memory.regions().get(i).pages() + 63) / 64)];
        }
        return new DirtyBitmap(memory, b);
    }

    /** An all-dirty bitmap for {@code memory}: what a first precopy round sends. */
    public static DirtyBitmap full(GuestMemory memory) {
        DirtyBitmap d = empty(memory);
        for (int i = 0; i < d.bits.length; i++) {
            long pages = memory.regions().get(i).pages();
            for (long p = 0; p < pages; p++) {
                d.bits[i][(int) (p >>> 6)] |= 1L << (p & 63);
            }
        }
        return d;
    }

    /**
     * The pages that hold data: every page outside the holes of each region's memfd (SEEK_DATA /
     * SEEK_HOLE). A page in a hole was never written and reads as zero, so it need not be read,
     * let alone sent, to a destination whose fresh memory is zero too.
     */
    public static DirtyBitmap populated(GuestMemory memory) {
        return populated(memory, empty(memory));
    }

    /**
     * {@link #populated(GuestMemory)}, given pages {@code known} to hold data already: only their holes
     * are searched. Data never turns back into a hole unless someone punches one, and the kernel walks
     * every page of a data extent to find its end (3 ms for 256 MiB here), so taking {@code known}
     * while the guest runs leaves little to do once it is paused.
     */
    public static DirtyBitmap populated(GuestMemory memory, DirtyBitmap known) {
        DirtyBitmap d = empty(memory);
        for (int i = 0; i < d.bits.length; i++) {
            long[] k = known.bits[i];
            System.arraycopy(k, 0, d.bits[i], 0, k.length);
            MemoryRegion r = memory.regions().get(i);
            long pages = r.pages();
            long p = 0;
            while (p < pages) {
                long holeStart = nextBit(k, p, pages, false);
                long holeEnd = nextBit(k, holeStart, pages, true);
                if (holeStart < holeEnd) {
                    markData(d.bits[i], r, holeStart * GuestMemory.PAGE_SIZE, holeEnd * GuestMemory.PAGE_SIZE);
                }
                p = holeEnd;
            }
        }
        return d;
    }

    /** Sets the bits of the pages in [from, to) of {@code r}'s memfd that hold data. */
    private static void markData(long[] bits, MemoryRegion r, long from, long to) {
        int fd = r.mapping().fd();
        long off = from;
        while (off < to) {
            long data = dev.ferry.linux.LibC.lseek(fd, off, dev.ferry.linux.LibC.SEEK_DATA);
            if (data < 0) {
                int errno = com.sun.jna.Native.getLastError();
                if (errno == dev.ferry.linux.Errno.ENXIO) {
                    return; // no data after off
                }
                throw new dev.ferry.linux.NativeException("lseek(SEEK_DATA)", errno);
            }
            if (data >= to) {
                return;
            }
            long hole = dev.ferry.linux.LibC.lseek(fd, data, dev.ferry.linux.LibC.SEEK_HOLE);
            if (hole < 0) {
                throw new dev.ferry.linux.NativeException("lseek(SEEK_HOLE)", com.sun.jna.Native.getLastError());
            }
            long end = Math.min(hole, to);
            for (long p = data / GuestMemory.PAGE_SIZE; p < (end + GuestMemory.PAGE_SIZE - 1) / GuestMemory.PAGE_SIZE; p++) {
                bits[(int) (p >>> 6)] |= 1L << (p & 63);
            }
            off = end;
        }
    }

    /** The first page at or after {@code from} (below {@code limit}) whose bit is {@code set}, else limit. */
    private static long nextBit(long[] words, long from, long limit, boolean set) {
        long p = from;
        while (p < limit) {
            int w = (int) (p >>> 6);
            long word = (set ? words[w] : ~words[w]) & (-1L << (p & 63));
            if (word != 0) {
                return Math.min(((long) w << 6) + Long.numberOfTrailingZeros(word), limit);
            }
            p = (long) (w + 1) << 6;
        }
        return limit;
    }

    public long count() {
        long n = 0;
        for (long[] b : bits) {
            for (long w : b) {
                n += Long.bitCount(w);
            }
        }
        return n;
    }

    public boolean isDirty(long gpa) {
        for (int i = 0; i < bits.length; i++) {
            MemoryRegion r = regions.get(i);
            if (r.contains(gpa)) {
                long p = (gpa - r.guestPhysAddr()) / GuestMemory.PAGE_SIZE;
                return (bits[i][(int) (p >>> 6)] & (1L << (p & 63))) != 0;
            }
        }
        throw new IllegalArgumentException(String.format("0x%x is outside guest memory", gpa));
    }

    public void markDirty(long gpa) {
        for (int i = 0; i < bits.length; i++) {
            MemoryRegion r = regions.get(i);
            if (r.contains(gpa)) {
                long p = (gpa - r.guestPhysAddr()) / GuestMemory.PAGE_SIZE;
                bits[i][(int) (p >>> 6)] |= 1L << (p & 63);
                return;
            }
        }
        throw new IllegalArgumentException(String.format("0x%x is outside guest memory", gpa));
    }

    /**
     * Marks {@code pages} pages from the page-aligned {@code gpa} dirty, a word at a time. The range
     * must lie in one region: a dirty-page scan reports runs per region.
     */
    public void markRange(long gpa, long pages) {
        if (gpa % GuestMemory.PAGE_SIZE != 0 || pages < 0) {
            throw new IllegalArgumentException(String.format("range 0x%x + %d pages: gpa must be page-aligned, pages >= 0", gpa, pages));
        }
        for (int i = 0; i < bits.length; i++) {
            MemoryRegion r = regions.get(i);
            if (r.contains(gpa)) {
                long from = (gpa - r.guestPhysAddr()) / GuestMemory.PAGE_SIZE;
                if (pages > r.pages() - from) {
                    throw new IllegalArgumentException(String.format(
                            "range 0x%x + %d pages runs past the end of slot %d (0x%x)", gpa, pages, r.slot(), r.endGpa()));
                }
                setBits(bits[i], from, from + pages);
                return;
            }
        }
        throw new IllegalArgumentException(String.format("0x%x is outside guest memory", gpa));
    }

    /**
     * Removes and returns the first run of dirty pages at or after {@code fromGpa}, at most {@code maxPages} long and
     * inside one region; null when no page at or after it is dirty.
     */
    public PageRange takeRun(long fromGpa, long maxPages) {
        if (maxPages <= 0) {
            throw new IllegalArgumentException("maxPages must be > 0, got " + maxPages);
        }
        for (int i = 0; i < bits.length; i++) {
            MemoryRegion r = regions.get(i);
            if (r.endGpa() <= fromGpa) {
                continue;
            }
            long from = fromGpa <= r.guestPhysAddr() ? 0 : (fromGpa - r.guestPhysAddr()) / GuestMemory.PAGE_SIZE;
            long first = nextBit(bits[i], from, r.pages(), true);
            if (first == r.pages()) {
                continue;
            }
            long end = nextBit(bits[i], first, Math.min(r.pages(), first + maxPages), false);
            for (long p = first; p < end; p++) {
                bits[i][(int) (p >>> 6)] &= ~(1L << (p & 63));
            }
            return new PageRange(r.guestPhysAddr() + first * GuestMemory.PAGE_SIZE, end - first);
        }
        return null;
    }

    /** Sets bits [from, to) of {@code words}. */
    private static void setBits(long[] words, long from, long to) {
        if (from >= to) {
            return;
        }
        int first = (int) (from >>> 6);
        int last = (int) ((to - 1) >>> 6);
        long firstMask = -1L << (from & 63);
        long lastMask = -1L >>> (63 - ((to - 1) & 63));
        if (first == last) {
            words[first] |= firstMask & lastMask;
            return;
        }
        words[first] |= firstMask;
        Arrays.fill(words, first + 1, last, -1L);
        words[last] |= lastMask;
    }

    /** Adds every page dirty in {@code other} (same memory) to this bitmap. */
    public void or(DirtyBitmap other) {
        for (int i = 0; i < bits.length; i++) {
            for (int w = 0; w < bits[i].length; w++) {
                bits[i][w] |= other.bits[i][w];
            }
        }
    }

    /** Calls {@code action} with the guest-physical address of every dirty page, in ascending order. */
    public void forEachDirtyPage(LongConsumer action) {
        for (int i = 0; i < bits.length; i++) {
            long base = regions.get(i).guestPhysAddr();
            long[] b = bits[i];
            for (int w = 0; w < b.length; w++) {
                long word = b[w];
                while (word != 0) {
                    int bit = Long.numberOfTrailingZeros(word);
                    action.accept(base + ((long) w * 64 + bit) * GuestMemory.PAGE_SIZE);
                    word &= word - 1;
                }
            }
        }
    }

    /** Runs of adjacent dirty pages (never crossing a slot), in ascending order. */
    public List<PageRange> ranges() {
        List<PageRange> out = new ArrayList<>();
        long[] run = {-1, 0};
        forEachDirtyPage(gpa -> {
            if (run[0] >= 0 && run[0] + run[1] * GuestMemory.PAGE_SIZE == gpa && sameRegion(run[0], gpa)) {
                run[1]++;
            } else {
                if (run[0] >= 0) {
                    out.add(new PageRange(run[0], run[1]));
                }
                run[0] = gpa;
                run[1] = 1;
            }
        });
        if (run[0] >= 0) {
            out.add(new PageRange(run[0], run[1]));
        }
        return out;
    }

    private boolean sameRegion(long a, long b) {
        for (MemoryRegion r : regions) {
            if (r.contains(a)) {
                return r.contains(b);
            }
        }
        return false;
    }

    long[] regionBits(int index) {
        return bits[index];
    }

    /** A copy of region {@code index}'s bits: bit i of word i/64 is page i of the region. */
    public long[] words(int index) {
        return bits[index].clone();
    }

    /** A bitmap over {@code memory} from per-region words (as {@link #words} returns them). */
    public static DirtyBitmap of(GuestMemory memory, long[][] words) {
        DirtyBitmap d = empty(memory);
        if (words.length != d.bits.length) {
            throw new IllegalArgumentException("bitmap has " + words.length + " regions, memory has " + d.bits.length);
        }
        for (int i = 0; i < words.length; i++) {
            if (words[i].length != d.bits[i].length) {
                throw new IllegalArgumentException("region " + i + " bitmap has " + words[i].length + " words, expected "
                        + d.bits[i].length);
            }
            System.arraycopy(words[i], 0, d.bits[i], 0, words[i].length);
            long pages = memory.regions().get(i).pages();
            if (pages % 64 != 0) {
                d.bits[i][d.bits[i].length - 1] &= (1L << (pages % 64)) - 1; // no bits past the region's end
            }
        }
        return d;
    }

    /** Removes every page set in {@code other} (same memory) from this bitmap. */
    public void andNot(DirtyBitmap other) {
        for (int i = 0; i < bits.length; i++) {
            for (int w = 0; w < bits[i].length; w++) {
                bits[i][w] &= ~other.bits[i][w];
            }
        }
    }

    /** A bitmap of every page NOT set in this one. */
    public DirtyBitmap complement() {
        DirtyBitmap full = full(memory);
        full.andNot(this);
        return full;
    }

    public void clear(long gpa) {
        for (int i = 0; i < bits.length; i++) {
            MemoryRegion r = regions.get(i);
            if (r.contains(gpa)) {
                long p = (gpa - r.guestPhysAddr()) / GuestMemory.PAGE_SIZE;
                bits[i][(int) (p >>> 6)] &= ~(1L << (p & 63));
                return;
            }
        }
        throw new IllegalArgumentException(String.format("0x%x is outside guest memory", gpa));
    }
}
