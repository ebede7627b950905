package dev.ferry.vm;

import java.util.Locale;

/** What runs a guest: a KVM micro-VM, or native code in host threads (no /dev/kvm needed). */
public enum Backend {
    KVM,
    PROCESS;

    /** The name used on command lines and in JSON: "kvm" or "process". */
    public String cliName() {
        return name().toLowerCase(Locale.ROOT);
    }

    public static Backend parse(String s) {
        for (Backend b : values()) {
            if (b.cliName().equals(s)) {
                return b;
            }
        }
        throw new IllegalArgumentException("unknown backend '" + s + "' (kvm or process)");
    }
}
