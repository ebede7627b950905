package dev.ferry.control.migration;

import java.util.Locale;

/**
 * Faults an agent injects into its migrations on purpose, to prove that verification and the error paths catch
 * them. For tests and demos only: an agent injects one only when started with {@code ferry agent --inject-fault
 * NAME}, and never into its own warm-up migrations. {@link #DROP_DIRTY_PAGE} acts where the agent is the source,
 * {@link #REFUSE_DEVICE_STATE} where it is the destination.
 */
public enum FaultInjection {
    /** Nothing injected: what every production agent runs. */
    NONE,

    /**
     * The source leaves out one page whose copy on the destination is stale or missing, as a dirty log that
     * missed a write would. Precopy path (PRECOPY, and HYBRID that converged): a page the guest dirtied since it
     * was last sent, left out of the stop-and-copy round, so the destination keeps the old content (the digest of
     * the bytes sent still equals the bytes received). Hybrid switching to postcopy: such a page is neither pushed
     * nor discarded, so the destination keeps its stale precopy copy. Mode POSTCOPY: the last page holding data is
     * left out of the push list, so the destination fills it with zeros.
     */
    DROP_DIRTY_PAGE,

    /**
     * The destination refuses every incoming device-state stream with FAILED_PRECONDITION, as a destination whose
     * device models cannot take the source's state would: the source must take its paused guest back.
     */
    REFUSE_DEVICE_STATE;

    /** The CLI name: lower case with dashes, e.g. {@code drop-dirty-page}. */
    public String cliName() {
        return name().toLowerCase(Locale.ROOT).replace('_', '-');
    }

    /** Parses a CLI name; IllegalArgumentException naming the choices otherwise. */
    public static FaultInjection parse(String s) {
        for (FaultInjection f : values()) {
            if (f.cliName().equals(s)) {
                return f;
            }
        }
        throw new IllegalArgumentException("unknown fault '" + s + "'; choose one of: none, drop-dirty-page, refuse-device-state");
    }
}
