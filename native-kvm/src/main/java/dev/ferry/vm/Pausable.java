package dev.ferry.vm;

/** Guest code that can be started, stopped between instructions and resumed. */
public interface Pausable {
    /** Runs every vCPU for the first time (a fresh guest boots; a restored one continues). Once only. */
    void start();

    /**
     * Stops every vCPU and returns once none runs guest code; what the guest did up to here is in its
     * memory and state. Idempotent.
     */
    void pause() throws InterruptedException;

    /** Lets the vCPUs run again after {@link #pause()}. */
    void resume();

    /** True while no vCPU may run: paused, or not started yet. */
    boolean paused();
}
