package dev.ferry.kvm.sys;

import static org.junit.jupiter.api.Assertions.fail;

import java.util.Optional;
import org.junit.jupiter.api.Assumptions;

/**
 * Gate for tests that need /dev/kvm or userfaultfd: they are skipped (with the reason) when the
 * host lacks them, unless the system property {@code ferry.requireKvm=true} is set (CI sets it
 * through the parent pom), in which case they fail instead.
 */
public final class KvmTestSupport {
    public static final String REQUIRE_KVM_PROPERTY = "ferry.requireKvm";

    private KvmTestSupport() {}

    /** True when KVM-dependent tests must fail rather than skip. */
    public static boolean kvmRequired() {
        return Boolean.parseBoolean(System.getProperty(REQUIRE_KVM_PROPERTY, "false"));
    }

    /** Skips (or fails, see class comment) unless /dev/kvm is usable with API version 12. */
    public static void assumeKvm() {
        gate("KVM", KvmSystem.unavailableReason());
    }

    /** Skips (or fails) unless a userfaultfd that handles kernel-mode faults can be opened. */
    public static void assumeUserfaultfd() {
        gate("userfaultfd", Userfaultfd.unavailableReason());
    }

    private static void gate(String what, Optional<String> unavailable) {
        if (unavailable.isEmpty()) {
            return;
        }
        if (kvmRequired()) {
            fail(what + " is required here (-D" + REQUIRE_KVM_PROPERTY + "=true) but unavailable: " + unavailable.get());
        }
        Assumptions.assumeTrue(false, "skipped, " + what + " unavailable: " + unavailable.get());
    }
}
