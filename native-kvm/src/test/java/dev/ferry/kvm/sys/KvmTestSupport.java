package dev.ferry.kvm.sys;

import static org.junit.jupiter.api.Assertions.fail;

import java.util.Optional;
import org.junit.jupiter.api.Assumptions;
import dev.ferry.linux.Userfaultfd;

/**
 * Gate for tests that need /dev/kvm or userfaultfd. System property {@code ferry.requireKvm}:
 * {@code auto} (the parent pom's default) requires them wherever /dev/kvm exists, so a machine with
 * KVM can never pass by skipping; {@code true} requires them everywhere; {@code false} lets them
 * skip. Skips always say why.
 */
public final class KvmTestSupport {
    public static final String REQUIRE_KVM_PROPERTY = "ferry.requireKvm";

    private KvmTestSupport() {}

    /** True when KVM-dependent tests must fail rather than skip. */
    public static boolean kvmRequired() {
        String v = System.getProperty(REQUIRE_KVM_PROPERTY, "auto").trim();
        if (v.equalsIgnoreCase("auto") || v.isEmpty()) {
            return new java.io.File(KvmSystem.device()).exists();
        }
        return Boolean.parseBoolean(v);
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
