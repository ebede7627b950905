package dev.ferry.process;

import dev.ferry.linux.Errno;
import dev.ferry.linux.MappedMemory;
import dev.ferry.linux.NativeException;
import dev.ferry.linux.PagemapIoctls;
import dev.ferry.linux.PagemapScanner;
import org.junit.jupiter.api.Assumptions;

/**
 * Gate for tests of write tracking. They skip only where the kernel has no PAGEMAP_SCAN (before
 * Linux 6.7, which also lacks UFFD_FEATURE_WP_ASYNC); anything else missing (userfaultfd refused,
 * /proc not mounted) fails them, so a capable machine cannot pass by skipping.
 */
public final class PagemapTestSupport {
    private PagemapTestSupport() {}

    public static void assumePagemapScan() {
        try (PagemapScanner s = PagemapScanner.open(1); MappedMemory m = MappedMemory.anonymous(4096)) {
            s.scan(m.address(), m.address() + m.size(), 0, 0, 0, 0, PagemapIoctls.PAGE_IS_PRESENT, (a, b, c) -> {});
        } catch (NativeException e) {
            if (e.is(Errno.ENOTTY) || e.is(Errno.EINVAL)) {
                Assumptions.abort("skipped, the kernel lacks PAGEMAP_SCAN (Linux 6.7+): " + e.getMessage());
            }
            throw e;
        }
    }
}
