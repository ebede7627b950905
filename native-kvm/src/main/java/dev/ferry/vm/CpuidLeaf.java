package dev.ferry.vm;

/** One CPUID leaf as the guest sees it (kvm_cpuid_entry2 without the padding). */
public record CpuidLeaf(int function, int index, int flags, int eax, int ebx, int ecx, int edx) {}
