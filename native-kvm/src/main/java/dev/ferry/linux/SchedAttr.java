package dev.ferry.linux;

import com.sun.jna.Structure.FieldOrder;

/** {@code struct sched_attr} (linux/sched/types.h), SCHED_ATTR_SIZE_VER1: for sched_setattr(2). */
@FieldOrder({"size", "sched_policy", "sched_flags", "sched_nice", "sched_priority", "sched_runtime",
        "sched_deadline", "sched_period", "sched_util_min", "sched_util_max"})
public class SchedAttr extends NativeStruct {
    public int size;
    public int sched_policy;
    public long sched_flags;
    public int sched_nice;
    public int sched_priority;
    /** For SCHED_NORMAL (Linux 6.12+): the task's own time slice in ns; 0 = the default. */
    public long sched_runtime;
    public long sched_deadline;
    public long sched_period;
    public int sched_util_min;
    public int sched_util_max;

    public SchedAttr() {}
}
