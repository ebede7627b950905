package dev.ferry.dataplane;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import java.nio.ByteBuffer;
import java.util.SplittableRandom;

/** Guest memory fixtures for tests: memfd-backed (no /dev/kvm needed). */
public final class TestMemory {
    static final int PAGE = 4096;

    private TestMemory() {
    }

    /** Fills every page with random bytes, except about {@code zeroPercent}% of pages, which are left all zero. */
    static long fillRandom(GuestMemory memory, long seed, int zeroPercent) {
        SplittableRandom rnd = new SplittableRandom(seed);
        long zeros = 0;
        for (long gpa = 0; gpa < memory.totalBytes(); gpa += PAGE) {
            if (rnd.nextInt(100) < zeroPercent) {
                zeroPage(memory, gpa);
                zeros++;
            } else {
                randomPage(memory, gpa, rnd);
            }
        }
        return zeros;
    }

    static void randomPage(GuestMemory memory, long gpa, SplittableRandom rnd) {
        ByteBuffer v = page(memory, gpa);
        for (int i = 0; i < PAGE; i += 8) {
            v.putLong(i, rnd.nextLong() | 1); // never all zero
        }
    }

    static void zeroPage(GuestMemory memory, long gpa) {
        ByteBuffer v = page(memory, gpa);
        for (int i = 0; i < PAGE; i += 8) {
            v.putLong(i, 0);
        }
    }

    static ByteBuffer page(GuestMemory memory, long gpa) {
        return memory.buffer(gpa, PAGE);
    }

    static long countZeroPages(GuestMemory memory) {
        long n = 0;
        for (long gpa = 0; gpa < memory.totalBytes(); gpa += PAGE) {
            if (dev.ferry.memory.PageHashes.isZero(page(memory, gpa))) {
                n++;
            }
        }
        return n;
    }

    public static void assertSameContent(GuestMemory expected, GuestMemory actual) {
        assertEquals(expected.totalBytes(), actual.totalBytes());
        for (int i = 0; i < expected.regions().size(); i++) {
            MemoryRegion a = expected.regions().get(i);
            MemoryRegion b = actual.regions().get(i);
            int m = a.view().duplicate().clear().mismatch(b.view().duplicate().clear());
            if (m != -1) {
                fail(String.format("memory differs at gpa 0x%x", a.guestPhysAddr() + m));
            }
        }
    }

    static boolean allZero(GuestMemory memory) {
        for (MemoryRegion r : memory.regions()) {
            ByteBuffer v = r.view().duplicate().clear();
            ByteBuffer zero = ByteBuffer.allocateDirect(v.capacity());
            if (v.mismatch(zero) != -1) {
                return false;
            }
        }
        return true;
    }
}
