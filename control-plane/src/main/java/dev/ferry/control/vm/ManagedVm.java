package dev.ferry.control.vm;

import dev.ferry.vm.GuestVm;
import dev.ferry.v1.Vm;
import java.time.Instant;

/**
 * A VM this agent hosts: the runtime plus what the API reports about it. The state is changed only
 * through {@link VmRegistry}, which serialises transitions.
 */
public final class ManagedVm {
    private final String name;
    private final GuestVm vm;
    private final Instant createTime;
    private final java.util.Map<String, String> labels;
    // Guarded by this.
    private Vm.State state;
    private String migration = "";
    private String error = "";
    private String busy = ""; // what else holds the VM: a snapshot being written, memory loading from one
    private AutoCloseable attachment; // closed before the VM: an on-demand restore's loader

    ManagedVm(String name, GuestVm vm, Vm.State state, java.util.Map<String, String> labels) {
        this.labels = java.util.Map.copyOf(labels);
        this.name = name;
        this.vm = vm;
        this.state = state;
        this.createTime = Instant.now();
    }

    public String name() {
        return name;
    }

    public GuestVm vm() {
        return vm;
    }

    /** Vm.labels, as created (a migrated VM's come from its source). */
    public java.util.Map<String, String> labels() {
        return labels;
    }

    public Instant createTime() {
        return createTime;
    }

    public synchronized Vm.State state() {
        if (vm.failure() != null && state != Vm.State.STOPPED) {
            return Vm.State.FAILED;
        }
        return state;
    }

    public synchronized void setState(Vm.State s) {
        state = s;
    }

    public synchronized String migration() {
        return migration;
    }

    /**
     * Marks the VM as held by {@code migrationName} (or released, with ""); returns false if another migration, a
     * snapshot or a restore holds it.
     */
    public synchronized boolean hold(String migrationName, Vm.State newState) {
        if (!migration.isEmpty() && !migrationName.isEmpty() && !migration.equals(migrationName)) {
            return false;
        }
        if (!busy.isEmpty() && !migrationName.isEmpty()) {
            return false;
        }
        migration = migrationName;
        state = newState;
        return true;
    }

    /** What holds the VM now: its migration, a snapshot or a restore in progress, or "". */
    public synchronized String holder() {
        return migration.isEmpty() ? busy : migration;
    }

    /** Holds the VM for {@code what} (not a migration); false if anything holds it already. */
    public synchronized boolean tryBusy(String what) {
        if (!migration.isEmpty() || !busy.isEmpty()) {
            return false;
        }
        busy = what;
        return true;
    }

    public synchronized void notBusy() {
        busy = "";
    }

    /** Something to close before the VM itself, e.g. the loader of an on-demand restore. */
    synchronized void attach(AutoCloseable a) {
        attachment = a;
    }

    synchronized AutoCloseable detach() {
        AutoCloseable a = attachment;
        attachment = null;
        return a;
    }

    public synchronized String error() {
        Throwable t = vm.failure();
        return t != null ? t.getMessage() : error;
    }

    public synchronized void setError(String e) {
        error = e;
    }
}
