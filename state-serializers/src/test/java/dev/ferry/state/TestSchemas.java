package dev.ferry.state;

import dev.ferry.state.test.AllTypes;
import dev.ferry.state.test.VcpuState;
import dev.ferry.state.test.VmState;
import java.util.List;

/** Schemas of the test-only messages in src/test/proto. */
final class TestSchemas {
    private TestSchemas() {
    }

    static final String UART = "test.uart";

    /** The UART as the build that wrote the golden files knew it. */
    static final SectionSchema<dev.ferry.state.test.v1.UartState> UART_V1 =
            SectionSchema.builder(UART, dev.ferry.state.test.v1.UartState.getDefaultInstance())
                    .version(1)
                    .phase(RestorePhase.DEVICE)
                    .build();

    /** Version 2: scratch removed, ier renamed (same JSON name), rx_timeout now in ns (step), loopback added. */
    static final SectionSchema<dev.ferry.state.test.v2.UartState> UART_V2 =
            SectionSchema.builder(UART, dev.ferry.state.test.v2.UartState.getDefaultInstance())
                    .version(2)
                    .phase(RestorePhase.DEVICE)
                    .upgrade(1, s -> s.toBuilder().setRxTimeout(s.getRxTimeout() * 1000).build())
                    .build();

    /** Version 3: adds mcr; older sections get OUT2 set; version 2 readers may ignore mcr (minReaderVersion 2). */
    static final SectionSchema<dev.ferry.state.test.v3.UartState> UART_V3 =
            SectionSchema.builder(UART, dev.ferry.state.test.v3.UartState.getDefaultInstance())
                    .version(3)
                    .minReaderVersion(2)
                    .phase(RestorePhase.DEVICE)
                    .upgrade(1, s -> s.toBuilder().setRxTimeout(s.getRxTimeout() * 1000).build())
                    .upgrade(2, s -> s.toBuilder().setMcr(0x08).build())
                    .build();

    static final SectionSchema<AllTypes> ALL_TYPES =
            SectionSchema.builder("test.all-types", AllTypes.getDefaultInstance())
                    .phase(RestorePhase.DEVICE)
                    .build();

    static final SectionSchema<VcpuState> VCPU =
            SectionSchema.builder("kvm.vcpu", VcpuState.getDefaultInstance())
                    .phase(RestorePhase.VCPU)
                    .build();

    static final SectionSchema<VmState> VM =
            SectionSchema.builder("kvm.vm", VmState.getDefaultInstance())
                    .phase(RestorePhase.VM)
                    .build();

    static List<SectionSchema<?>> all() {
        return List.of(ALL_TYPES, VCPU, VM, UART_V2);
    }
}
