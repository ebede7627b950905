package dev.ferry.backends;

import static org.junit.jupiter.api.Assertions.fail;

import dev.ferry.kvm.sys.KvmTestSupport;
import dev.ferry.process.ProcessBackend;
import dev.ferry.vm.Backend;
import dev.ferry.vm.GuestBackend;
import org.junit.jupiter.api.Assumptions;

/**
 * Gate for tests that run guests on a backend. KVM follows {@link KvmTestSupport} (required wherever
 * /dev/kvm exists). The process backend is required everywhere unless {@code -Dferry.requireProcess=false}:
 * it is what lets every machine run the engine, so a machine where it cannot run must say so loudly.
 */
public final class BackendTestSupport {
    public static final String REQUIRE_PROCESS_PROPERTY = "ferry.requireProcess";

    private BackendTestSupport() {}

    /** Skips (or fails, see class comment) unless {@code backend} can run guests here. */
    public static void assume(Backend backend) {
        if (backend == Backend.KVM) {
            KvmTestSupport.assumeKvm();
            KvmTestSupport.assumeUserfaultfd();
            return;
        }
        ProcessBackend.unavailableReason().ifPresent(why -> {
            if (!"false".equalsIgnoreCase(System.getProperty(REQUIRE_PROCESS_PROPERTY, "true").trim())) {
                fail("the process backend is required (-D" + REQUIRE_PROCESS_PROPERTY + "=false to let it skip) but"
                        + " cannot run here: " + why);
            }
            Assumptions.assumeTrue(false, "skipped, process backend unavailable: " + why);
        });
    }

    /** {@link #assume}, then the backend opened. */
    public static GuestBackend open(Backend backend) {
        assume(backend);
        return Backends.open(Backends.Choice.valueOf(backend.name())).preferred();
    }
}
