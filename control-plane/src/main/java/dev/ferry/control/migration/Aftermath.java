package dev.ferry.control.migration;

/**
 * Where the VM lives once a migration has stopped early (CANCELLED or FAILED), and therefore what the I/O edge
 * of each agent must do next. Returned by the cancel, abort and fail events of both state machines.
 */
public enum Aftermath {
    /**
     * The destination never ran the VM. The source resumes its vCPUs (if they were paused) and keeps running the
     * VM; the destination session is aborted (best effort) and the destination VM deleted.
     */
    SOURCE_KEEPS_VM,

    /**
     * The destination already runs the VM (postcopy, or after a successful switchover). The source must not resume
     * its copy. In postcopy the guest's memory was split between the hosts, so if pages were still missing the
     * destination VM may be unusable; the source keeps its memory until an operator decides.
     */
    DESTINATION_KEEPS_VM,

    /**
     * The source asked the destination to run the VM (CompleteIncomingMigration) and did not learn the answer, or
     * did not learn the outcome of the verification (VerifyIncomingMigration, CommitIncomingMigration, or the
     * AbortIncomingMigration of a rollback).
     * Neither side may act alone: the source keeps its vCPUs paused and does not abort the destination;
     * CompleteIncomingMigration is idempotent, so an operator (or a retry) can find out which host runs the VM.
     */
    UNDECIDED
}
