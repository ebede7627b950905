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
    // Guarded by this.
    private Vm.State state;
    private String migration = "";
    private String error = "";

    ManagedVm(String name, GuestVm vm, Vm.State state) {
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

    /** Marks the VM as held by {@code migrationName} (or released, with ""); returns false if another holds it. */
    public synchronized boolean hold(String migrationName, Vm.State newState) {
        if (!migration.isEmpty() && !migrationName.isEmpty() && !migration.equals(migrationName)) {
            return false;
        }
        migration = migrationName;
        state = newState;
        return true;
    }

    public synchronized String error() {
        Throwable t = vm.failure();
        return t != null ? t.getMessage() : error;
    }

    public synchronized void setError(String e) {
        error = e;
    }
}
