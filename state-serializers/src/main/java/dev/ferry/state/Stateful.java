package dev.ferry.state;

import com.google.protobuf.Message;

/**
 * A component whose state is saved and restored: the VM-level state, each vCPU, each device. Plain data out, plain
 * data in: {@link #saveState()} returns a protobuf message, {@link #restoreState} takes one. Runtime resources the
 * component needs (file descriptors, guest memory, ...) are given to it when it is constructed, never saved.
 *
 * <p>Both methods are called with the VM paused, from one thread at a time.
 *
 * @param <M> the payload message type, as described by {@link #schema()}
 */
public interface Stateful<M extends Message> {

    /** The kind of section this component saves. Usually a constant shared by all instances of the kind. */
    SectionSchema<M> schema();

    /** Which instance of the kind: {@code "0"}, {@code "1"} for vCPUs, {@code "com1"} for a serial port, {@code ""} for singletons. */
    String instanceId();

    /** Captures the component's current state (VM paused). */
    M saveState();

    /**
     * Optional consistency check run while the whole stream is validated, before <em>any</em> component is restored
     * (the {@code post_load} check of QEMU's vmstate, moved before the point of no return). The state has already been
     * upgraded to the current version. Throw to refuse the whole stream. Must not change the component.
     */
    default void validateState(M state) throws StateException {
    }

    /**
     * Replaces the component's state (VM paused). The state is at the schema's current version and has passed
     * {@link #validateState}. Called in phase order, then registration order.
     */
    void restoreState(M state) throws StateException;
}
