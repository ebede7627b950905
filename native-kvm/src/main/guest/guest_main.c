/*
 * The KVM guest's ring-3 main: runs the workload core (workload_core.c) and makes the port
 * accesses it asks for with real in/out instructions, so the VMM's devices see them as exits.
 * Guest memory is identity-mapped (base 0) and the TSC needs no offset (KVM keeps the guest's).
 */
#include "abi.h"
#include "workload_core.h"

typedef unsigned long u64;
typedef unsigned int u32;

#define PARAM(off) (*(volatile u64 *)(ABI_PARAMS_GPA + (off)))

static inline u32 in_port(unsigned short port, u64 size)
{
    if (size == 1) {
        unsigned char v;
        __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
        return v;
    }
    if (size == 2) {
        unsigned short v;
        __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
        return v;
    }
    u32 v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline void out_port(unsigned short port, u64 size, u32 v)
{
    if (size == 1)
        __asm__ volatile("outb %0, %1" : : "a"((unsigned char)v), "Nd"(port));
    else if (size == 2)
        __asm__ volatile("outw %0, %1" : : "a"((unsigned short)v), "Nd"(port));
    else
        __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

/* Entered in ring 3 on every vCPU; the VMM passes the vCPU index in rdi. */
void workload_main(u64 cpu)
{
    volatile u64 *vs = (volatile u64 *)(ABI_VCPU_STATE_GPA + cpu * ABI_VCPU_STATE_STRIDE);
    u64 mem_bytes = PARAM(P_MEM_BYTES);
    /* The step validated the request (port, size 1/2/4, direction) before returning it. */
    while (ferry_workload_step(0, mem_bytes, cpu, 0, 0) == WL_STEP_IO) {
        unsigned short port = (unsigned short)vs[V_IO_PORT / 8];
        u64 size = vs[V_IO_SIZE / 8];
        if (vs[V_IO_DIR / 8] == ABI_IO_IN)
            vs[V_IO_VALUE / 8] = in_port(port, size);
        else
            out_port(port, size, (u32)vs[V_IO_VALUE / 8]);
        vs[V_IO_PENDING / 8] = 0;
    }
    /* WL_STEP_BAD: say so once, then only show that the vCPU executes. */
    __asm__ volatile("outl %0, %1" : : "a"((u32)ABI_EVENT_BAD_PARAMS), "Nd"((unsigned short)ABI_PORT_EVENT));
    if (cpu < ABI_MAX_VCPUS) {
        for (;;)
            *(volatile u64 *)(ABI_STATUS_GPA + cpu * ABI_STATUS_STRIDE + S_COUNTER) += 1;
    }
    for (;;)
        ;
}
