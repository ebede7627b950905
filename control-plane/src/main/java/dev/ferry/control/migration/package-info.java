/**
 * The pure-logic core of live migration: the source's and the destination's state machines, the precopy planner
 * and the progress accounting. Nothing here does I/O, starts threads or sleeps; the gRPC, data-plane and KVM code
 * at the edges reports what happened as events and acts on what comes back, and every time comes from an injected
 * {@link java.time.InstantSource}, so tests drive it deterministically.
 *
 * <ul>
 *   <li>{@link dev.ferry.control.migration.SourceStateMachine}: outgoing side, phases of {@code Migration.Phase}.</li>
 *   <li>{@link dev.ferry.control.migration.DestinationStateMachine}: destination side, the session states of
 *       migration_service.proto (RECEIVING ... ABORTED), each mapped to a {@code Migration.Phase}.</li>
 *   <li>{@link dev.ferry.control.migration.PrecopyPlanner}: rate estimates and the decision after each round,
 *       under a {@link dev.ferry.control.migration.ConvergencePolicy} (the API's MigrationPolicy with defaults).</li>
 *   <li>{@link dev.ferry.control.migration.ProgressTracker}: MigrationProgress snapshots and statistics
 *       counters.</li>
 * </ul>
 *
 * <p>An event that is not valid in the current phase throws
 * {@link dev.ferry.control.migration.IllegalTransitionException} and changes nothing; the edge answers it with
 * FAILED_PRECONDITION. The machines are not thread-safe: the edge holds one lock per migration around each event
 * and the I/O that decides it.
 */
package dev.ferry.control.migration;
