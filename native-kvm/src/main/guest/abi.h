/*
 * The contract between the Ferry VMM (Java: dev.ferry.guest.GuestAbi) and the guest workload.
 * Keep both sides in step: GuestAbiTest checks the Java constants against this header with gcc.
 *
 * The same workload core (workload_core.c) runs in ring 3 of the KVM guest and as host code in the
 * process backend, where guest-physical address g is host address base + g. Everything below is
 * therefore a guest-physical address or an offset, never a host pointer.
 */
#ifndef FERRY_GUEST_ABI_H
#define FERRY_GUEST_ABI_H

/* Guest-physical layout (identity mapped with 2 MiB user pages). */
#define ABI_GDT_GPA         0x1000UL
#define ABI_TSS_GPA         0xA000UL   /* 64-bit TSS with a full I/O permission bitmap (PVM ignores IOPL) */
#define ABI_TSS_LIMIT       (104UL + 8192UL)
#define ABI_PML4_GPA        0x3000UL
#define ABI_PDPT_GPA        0x4000UL
#define ABI_PARAMS_GPA      0x6000UL   /* written by the VMM before the first KVM_RUN; read-only to the guest */
#define ABI_STATUS_GPA      0x7000UL   /* one status block per vCPU (ABI_STATUS_STRIDE apart), written by the guest */
#define ABI_STATUS_STRIDE   64UL
#define ABI_MAX_VCPUS       64UL
#define ABI_BOOT_STACK_GPA  0x9000UL   /* ring-0 page holding one iretq frame per vCPU, ABI_BOOT_FRAME_STRIDE apart, below this */
#define ABI_BOOT_FRAME_STRIDE 64UL
#define ABI_CODE_GPA        0x10000UL  /* guest image (entry is its first byte); at most 64 KiB */
#define ABI_CODE_MAX        0x10000UL
#define ABI_PD_GPA          0x20000UL  /* page directories: one page per GiB of guest memory */
#define ABI_PD_MAX_PAGES    32UL       /* so at most 32 GiB of guest memory (0x20000..0x40000) */
#define ABI_USER_STACK_TOP  0xC0000UL  /* ring-3 stacks grow down from here, ABI_USER_STACK_SIZE per vCPU */
#define ABI_USER_STACK_SIZE 0x1000UL
#define ABI_VCPU_STATE_GPA  0x40000UL  /* one workload state block per vCPU, ABI_VCPU_STATE_STRIDE apart (16 KiB) */
#define ABI_VCPU_STATE_STRIDE 256UL    /* (the user stacks below ABI_USER_STACK_TOP end at 0x80000) */
#define ABI_GEN_GPA         0x100000UL /* generation table: one u32 per working-set page */

/* Ports. */
#define ABI_PORT_PROGRESS   0x510      /* in  (32-bit): progress report; returns the pending command */
#define ABI_PORT_RESULT     0x511      /* out (32-bit): result of the last command (wrong-page count) */
#define ABI_PORT_EVENT      0x512      /* out (32-bit): lifecycle events, see ABI_EVENT_* */
#define ABI_PORT_COM1       0x3f8

#define ABI_CMD_NONE        0
#define ABI_CMD_SELF_CHECK  1

#define ABI_EVENT_STARTED    1
#define ABI_EVENT_FILL_DONE  2
#define ABI_EVENT_BAD_PARAMS 0xbad

#define ABI_PATTERN_SEQUENTIAL 1
#define ABI_PATTERN_RANDOM     2
#define ABI_PATTERN_HOT_COLD   3

#define ABI_MAGIC   0x314c575952524546UL   /* "FERRYWL1" little-endian */
#define ABI_VERSION 2

/* Parameter block at ABI_PARAMS_GPA; every field is a u64 at the given byte offset. */
#define P_MAGIC            0
#define P_VERSION          8
#define P_WS_BASE          16   /* guest-physical address of the working set (4 KiB aligned) */
#define P_WS_PAGES         24   /* pages in the working set */
#define P_GEN_BASE         32   /* guest-physical address of the generation table */
#define P_TSC_PER_PAGE     40   /* pacing: TSC ticks between page writes; 0 = unlimited */
#define P_QUIET            48   /* 1 = fill once, then only count and report */
#define P_PATTERN          56   /* ABI_PATTERN_* */
#define P_TSC_PER_REPORT   64   /* TSC ticks between progress reports */
#define P_SEED             72   /* random-pattern seed, non-zero */
#define P_HOT_PAGES        80   /* hot/cold: size of the hot set in pages */
#define P_HOT_PERMILLE     88   /* hot/cold: share of writes that go to the hot set, per mille */
#define P_MAX_BACKLOG      96   /* pacing: most page writes a paced guest may owe after a pause */
#define P_VCPUS            104  /* vCPUs running the workload; vCPU i owns working-set slice i */
#define P_MEM_BYTES        112  /* guest memory size: the KVM guest bounds every address by it */
#define P_WORD_STRIDE      120  /* data words: word i of a page is data when i % stride == 0, else 0 (1, 2, 4 .. 512); 0 = 1 */
#define P_END              128  /* size of the parameter block */

/* Status block of vCPU i at ABI_STATUS_GPA + i * ABI_STATUS_STRIDE; every field a u64. */
#define S_COUNTER          0    /* rises on every loop iteration: proof the guest executes */
#define S_PAGES_WRITTEN    8    /* page writes since start, fill included */
#define S_PHASE            16   /* 1 filling, 2 running */
#define S_CHECKS           24   /* self-checks completed */
#define S_LAST_WRONG       32   /* wrong pages found by the last self-check */
#define S_REPORTS          40   /* progress reports made */

/*
 * Workload state block of vCPU i at ABI_VCPU_STATE_GPA + i * ABI_VCPU_STATE_STRIDE; every field a
 * u64. It holds all of the workload's loop state between two calls of ferry_workload_step, so a
 * vCPU paused between steps is captured by guest memory alone. All zero = not started. The core
 * validates every field it uses as an index before using it.
 */
#define V_STAGE            0    /* ABI_STAGE_* */
#define V_RESUME           8    /* where the next step continues within the stage: ABI_RESUME_* */
#define V_FILL_POS         16   /* next page to fill (index into the whole working set) */
#define V_SEQ              24   /* sequential pattern: position within this vCPU's slice */
#define V_RNG              32   /* xorshift64 state of the random and hot/cold patterns; never 0 once started */
#define V_PACED_FROM       40   /* pacing: clock at which the paced writes started */
#define V_OWED_WRITTEN     48   /* pacing: paced writes done since V_PACED_FROM (backlog cap applied) */
#define V_NEXT_REPORT      56   /* clock at or after which the next progress report is due */
#define V_CHECK_POS        64   /* self-check in progress: next page to check */
#define V_CHECK_WRONG      72   /* self-check in progress: wrong pages found so far */
#define V_IO_PENDING       80   /* 1: the port I/O request below is outstanding; the caller sets 0 once done */
#define V_IO_PORT          88
#define V_IO_SIZE          96   /* 1, 2 or 4 bytes */
#define V_IO_DIR           104  /* ABI_IO_OUT or ABI_IO_IN */
#define V_IO_VALUE         112  /* out: the value written; in: the caller stores the value read here */
#define V_CON_LEN          120  /* bytes of console text in V_CON_BUF, printed one outb per step */
#define V_CON_POS          128  /* next byte of V_CON_BUF to print */
#define V_CON_BUF          136  /* ABI_CON_MAX bytes of console text */
#define V_END              (V_CON_BUF + ABI_CON_MAX)
#define ABI_CON_MAX        96

#define ABI_STAGE_NEW      0    /* not started: the next step announces the workload and starts the fill */
#define ABI_STAGE_FILLING  1
#define ABI_STAGE_RUNNING  2

#define ABI_RESUME_LOOP    0    /* continue the stage's loop */
#define ABI_RESUME_ENTER   1    /* the stage's console text is out: set up its loop, then run it */
#define ABI_RESUME_COMMAND 2    /* the progress report's `in` returned a command in V_IO_VALUE: act on it */
#define ABI_RESUME_CHECK   3    /* a self-check is under way (V_CHECK_POS, V_CHECK_WRONG) */
#define ABI_RESUME_AFTER_REPORT 4 /* the report is done: finish the loop iteration that made it */
#define ABI_RESUME_CONSOLE 5    /* print V_CON_BUF[V_CON_POS..V_CON_LEN), then ABI_RESUME_ENTER */
#define ABI_RESUME_COUNT   6

#define ABI_IO_OUT         0
#define ABI_IO_IN          1

#endif
