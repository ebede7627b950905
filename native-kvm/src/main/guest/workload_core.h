/*
 * The workload core: Ferry's guest workload as one step function, so that the KVM guest (ring 3,
 * guest_main.c) and the process backend (host threads, libferryworkload.so through JNA) run the
 * same page-writing code. Java mirror: dev.ferry.guest.WorkloadLibrary (return codes, checked by
 * GuestAbiTest) and dev.ferry.guest.GuestAbi (state-block layout in abi.h).
 */
#ifndef FERRY_WORKLOAD_CORE_H
#define FERRY_WORKLOAD_CORE_H

/* Only these two symbols are exported from the shared library (built with -fvisibility=hidden). */
#define WL_EXPORT __attribute__((visibility("default")))

/* Return values of ferry_workload_step. */
#define WL_STEP_IO      1  /* a port I/O request is pending in the vCPU's state block: do it, then call again */
#define WL_STEP_STOPPED 2  /* *stop was set: returned between two loop iterations */
#define WL_STEP_BAD     3  /* the parameter block or the state block is out of range: the guest cannot run */

/*
 * Runs vCPU `cpu`'s workload from where its state block in guest memory says, until it needs port
 * I/O or *stop becomes non-zero. All state that survives a return lives in guest memory.
 *
 * Guest-physical address g is host address base + g; every address derived from guest memory is
 * checked against mem_bytes first. The clock is rdtsc() + tsc_offset.
 *
 * The I/O protocol: on WL_STEP_IO the state block holds the request (V_IO_PORT, V_IO_SIZE,
 * V_IO_DIR, V_IO_VALUE) with V_IO_PENDING = 1. The caller performs it (for an `in` it stores the
 * value read in V_IO_VALUE), sets V_IO_PENDING = 0 and calls again. A call that finds
 * V_IO_PENDING still 1 returns WL_STEP_IO at once: the request is still owed.
 */
WL_EXPORT long ferry_workload_step(unsigned long base, unsigned long mem_bytes, unsigned long cpu, long tsc_offset,
                                   const volatile int *stop /* NULL: never stop */);

/* The raw TSC of the calling CPU, for the process backend's clock calibration and offset. */
WL_EXPORT unsigned long ferry_rdtsc(void);

#endif
