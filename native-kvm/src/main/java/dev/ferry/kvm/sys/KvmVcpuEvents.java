package dev.ferry.kvm.sys;

import com.sun.jna.Pointer;
import com.sun.jna.Structure.FieldOrder;
import dev.ferry.linux.NativeStruct;

/**
 * {@code struct kvm_vcpu_events} (asm/kvm.h, Linux 6.1 layout): pending/injected exception,
 * interrupt, NMI and SMI state, for KVM_GET/SET_VCPU_EVENTS. {@link #flags} says which optional
 * parts KVM_SET_VCPU_EVENTS should apply (KVM_VCPUEVENT_VALID_*).
 */
@FieldOrder({"exception", "interrupt", "nmi", "sipi_vector", "flags", "smi", "triple_fault",
        "reserved", "exception_has_payload", "exception_payload"})
public class KvmVcpuEvents extends NativeStruct {
    /* When set in flags, include corresponding fields on KVM_SET_VCPU_EVENTS */
    public static final int KVM_VCPUEVENT_VALID_NMI_PENDING = 0x00000001;
    public static final int KVM_VCPUEVENT_VALID_SIPI_VECTOR = 0x00000002;
    public static final int KVM_VCPUEVENT_VALID_SHADOW = 0x00000004;
    public static final int KVM_VCPUEVENT_VALID_SMM = 0x00000008;
    public static final int KVM_VCPUEVENT_VALID_PAYLOAD = 0x00000010;
    public static final int KVM_VCPUEVENT_VALID_TRIPLE_FAULT = 0x00000020;

    /* Interrupt shadow states */
    public static final int KVM_X86_SHADOW_INT_MOV_SS = 0x01;
    public static final int KVM_X86_SHADOW_INT_STI = 0x02;

    @FieldOrder({"injected", "nr", "has_error_code", "pending", "error_code"})
    public static class ExceptionState extends NativeStruct {
        public byte injected;
        public byte nr;
        public byte has_error_code;
        public byte pending;
        public int error_code;
    }

    @FieldOrder({"injected", "nr", "soft", "shadow"})
    public static class InterruptState extends NativeStruct {
        public byte injected;
        public byte nr;
        public byte soft;
        public byte shadow;
    }

    @FieldOrder({"injected", "pending", "masked", "pad"})
    public static class NmiState extends NativeStruct {
        public byte injected;
        public byte pending;
        public byte masked;
        public byte pad;
    }

    @FieldOrder({"smm", "pending", "smm_inside_nmi", "latched_init"})
    public static class SmiState extends NativeStruct {
        public byte smm;
        public byte pending;
        public byte smm_inside_nmi;
        public byte latched_init;
    }

    @FieldOrder({"pending"})
    public static class TripleFaultState extends NativeStruct {
        public byte pending;
    }

    public ExceptionState exception = new ExceptionState();
    public InterruptState interrupt = new InterruptState();
    public NmiState nmi = new NmiState();
    public int sipi_vector;
    public int flags;
    public SmiState smi = new SmiState();
    public TripleFaultState triple_fault = new TripleFaultState();
    public byte[] reserved = new byte[26];
    public byte exception_has_payload;
    public long exception_payload;

    public KvmVcpuEvents() {}

    public KvmVcpuEvents(Pointer p) {
        super(p);
        read();
    }
}
