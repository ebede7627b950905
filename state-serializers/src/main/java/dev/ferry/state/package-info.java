/**
 * Device-state sections: the contract every stateful VM component implements ({@link dev.ferry.state.Stateful},
 * described by a {@link dev.ferry.state.SectionSchema}), the all-or-nothing save/restore of a VM's components
 * ({@link dev.ferry.state.StateRegistry}), and the forms of a saved {@link dev.ferry.state.SectionSet}: binary
 * ({@link dev.ferry.state.StateCodec}), JSON ({@link dev.ferry.state.StateJson}) and diff
 * ({@link dev.ferry.state.StateDiff}).
 *
 * <p>Version rules and format details: state-serializers/README.md. The wire schema of the stream is
 * {@code ferry/state/v1/stream.proto} (generated classes in {@code dev.ferry.state.v1}; note that
 * {@code dev.ferry.state.v1.Section} is the wire message, {@link dev.ferry.state.Section} the decoded record).
 */
package dev.ferry.state;
