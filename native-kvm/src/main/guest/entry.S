/*
 * Ring-0 entry. The VMM already put the vCPU in 64-bit long mode (sregs) and pointed RSP at an
 * iretq frame {rip=user_start, cs=user code|3, rflags=IOPL3, rsp=user stack, ss=user data|3}.
 * Ring 0 is emulated on this host (slow), ring 3 runs natively: so ring 0 executes one instruction.
 */
    .section .text.entry, "ax"
    .globl _entry
    .code64
_entry:
    iretq

    .text
    .globl user_start
user_start:
    /* rdi holds the vCPU index, set by the VMM before the first KVM_RUN */
    xor %ebp, %ebp
    and $-16, %rsp
    call workload_main
1:  jmp 1b

    .section .note.GNU-stack, "", @progbits
