/*
 * The contract between the Ferry VMM (Java: dev.ferry.kvm.guest.GuestAbi) and the guest workload.
 * Keep both sides in step: GuestAbiTest checks the Java constants against this header with gcc.
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
#define ABI_VERSION 1

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

/* Status block of vCPU i at ABI_STATUS_GPA + i * ABI_STATUS_STRIDE; every field a u64. */
#define S_COUNTER          0    /* rises on every loop iteration: proof the guest executes */
#define S_PAGES_WRITTEN    8    /* page writes since start, fill included */
#define S_PHASE            16   /* 1 filling, 2 running */
#define S_CHECKS           24   /* self-checks completed */
#define S_LAST_WRONG       32   /* wrong pages found by the last self-check */
#define S_REPORTS          40   /* progress reports made */

#endif
