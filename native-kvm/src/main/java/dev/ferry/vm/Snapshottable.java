package dev.ferry.vm;

import dev.ferry.state.SectionSchema;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateException;
import java.util.List;

/** A {@link Pausable} guest whose whole non-memory state is a set of versioned sections. */
public interface Snapshottable extends Pausable {
    /** Every section this VM may save or restore (for negotiation, decoding and JSON dumps). */
    List<SectionSchema<?>> stateSchemas();

    /** Captures every section (VM, vCPUs, devices). The VM must be paused or not started. */
    SectionSet saveState();

    /**
     * Checks {@code sections} against this VM completely (every required section present, versions
     * readable, payloads well-formed, values consistent) without applying anything.
     */
    void validateState(SectionSet sections) throws StateException;

    /** {@link #validateState}, then applies every section; nothing is applied if validation fails. */
    void restoreState(SectionSet sections) throws StateException;
}
