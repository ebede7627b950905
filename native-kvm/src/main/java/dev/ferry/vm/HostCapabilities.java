package dev.ferry.vm;

import java.util.List;

/**
 * What a backend offers on this host, probed once when it is opened.
 *
 * @param cpuid    CPUID leaves a new guest can be given (empty: the backend sets no CPU model)
 * @param tsc      this host's TSC
 * @param postcopy whether missing pages can be caught (userfaultfd), which postcopy needs
 */
public record HostCapabilities(List<CpuidLeaf> cpuid, HostTsc tsc, boolean postcopy) {
    public HostCapabilities {
        cpuid = List.copyOf(cpuid);
    }
}
