package dev.ferry.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.LongRange;
import org.junit.jupiter.api.Test;

/** The page hash: the same value from native and heap memory, native library or not (the digest is a wire format). */
class PageHashesTest {
    private static final int PAGE = (int) GuestMemory.PAGE_SIZE;

    @Property(tries = 200)
    void directAndHeapPagesHashAlikeAsTheJavaReferenceDoes(@ForAll long contentSeed,
            @ForAll @LongRange(min = 0, max = 1L << 40) long pageNumber, @ForAll boolean sparse) {
        long gpa = pageNumber * PAGE;
        byte[] bytes = new byte[PAGE];
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(contentSeed);
        if (sparse) { // one word in 512, as a page the guest has barely touched
            bytes[rnd.nextInt(PAGE)] = (byte) (1 + rnd.nextInt(255));
        } else {
            for (int i = 0; i < PAGE; i++) {
                bytes[i] = (byte) rnd.nextInt();
            }
        }
        ByteBuffer direct = ByteBuffer.allocateDirect(3 * PAGE);
        direct.put(PAGE + 8, bytes); // an unaligned page inside a larger buffer: hashed from its position
        direct.clear().position(PAGE + 8).limit(2 * PAGE + 8);
        long reference = PageHashes.javaHash(bytes, 0, gpa);
        assertEquals(reference, PageHashes.hashPage(direct, gpa), "direct buffer, " + PageHashes.implementation());
        assertEquals(reference, PageHashes.hashPage(ByteBuffer.wrap(bytes), gpa), "heap buffer");
        assertEquals(PAGE + 8, direct.position(), "the buffer's position is left as it was");
    }

    /** The digest is kept as pages change; it must equal the sum of the table whatever the order of changes. */
    @Property(tries = 50)
    void theDigestIsTheSumOfTheTableAfterAnySequenceOfChanges(@ForAll long seed) {
        try (GuestMemory memory = GuestMemory.allocate(GuestMemory.SLOT_ALIGN, 1)) { // changes land on its first 64 pages
            PageHashes hashes = new PageHashes(memory);
            java.util.SplittableRandom rnd = new java.util.SplittableRandom(seed);
            for (int i = 0; i < 500; i++) {
                long gpa = (long) rnd.nextInt(64) * PAGE;
                switch (rnd.nextInt(4)) {
                    case 0 -> hashes.set(gpa, 0); // a page known to be zero
                    case 1 -> hashes.set(gpa, hashes.get(gpa)); // the same hash again
                    case 2 -> {
                        memory.regionOf(gpa).slice(gpa, PAGE).putLong(rnd.nextInt(PAGE / 8) * 8, rnd.nextLong());
                        hashes.refresh(gpa);
                    }
                    default -> hashes.set(gpa, rnd.nextLong());
                }
            }
            long sum = 0;
            for (long gpa = 0; gpa < memory.totalPages() * PAGE; gpa += PAGE) {
                sum += hashes.get(gpa);
            }
            assertEquals(sum, hashes.digest());
            hashes.refreshAll();
            assertEquals(PageHashes.digestOf(memory), hashes.digest(), "after refreshAll, the memory's digest");
        }
    }

    @Test
    void aZeroPageHashesToZeroAndTheAddressChangesTheHash() {
        ByteBuffer page = ByteBuffer.allocateDirect(PAGE);
        assertEquals(0, PageHashes.hashPage(page, 4096));
        page.put(100, (byte) 1);
        assertTrue(PageHashes.hashPage(page, 4096) != PageHashes.hashPage(page, 8192), "seeded with the address");
    }

    @Test
    void theSystemLibraryIsUsedWhereItIsInstalled() {
        // Debian's libxxhash0 (a dependency of apt): where it is installed, a Java fallback would only be slower, and
        // silently so. The test fails rather than skips there.
        boolean installed = Files.exists(Path.of("/usr/lib/x86_64-linux-gnu/libxxhash.so.0"))
                || Files.exists(Path.of("/lib/x86_64-linux-gnu/libxxhash.so.0"));
        if (installed) {
            assertTrue(PageHashes.NATIVE, PageHashes.implementation());
        }
    }
}
