package dev.ferry.devices;

import com.google.protobuf.ByteString;
import dev.ferry.kvm.state.v1.SerialState;
import dev.ferry.state.RestorePhase;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.StateException;
import dev.ferry.state.Stateful;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.function.Consumer;

/**
 * A 16550-style UART, transmit side only (the guest never reads input). Registers the guest
 * programs (divisor latch, line and modem control, scratch, FIFO control) are kept and migrated,
 * and so is a half-written line, so a console line split across a migration comes out whole.
 */
public final class Serial16550 implements PortIoDevice, Stateful<SerialState> {
    public static final SectionSchema<SerialState> SCHEMA = SectionSchema.builder("device.serial", SerialState.getDefaultInstance())
            .version(1).minReadableVersion(1).phase(RestorePhase.DEVICE).build();

    private static final int THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;
    private static final int LCR_DLAB = 0x80;
    private static final int LSR_THRE_TEMT = 0x60;
    private static final int MAX_LINE = 4096;

    private final String name;
    private final int base;
    private final Consumer<String> lineSink;

    private int ier, lcr, mcr, scr, fcr;
    private int dll = 12, dlm; // 9600 baud, the reset default
    private long txBytes;
    private final ByteArrayOutputStream line = new ByteArrayOutputStream();

    /** {@code lineSink} receives each complete line the guest prints, without its newline. */
    public Serial16550(String name, int basePort, Consumer<String> lineSink) {
        this.name = name;
        this.base = basePort;
        this.lineSink = lineSink;
    }

    @Override
    public int basePort() {
        return base;
    }

    @Override
    public int portCount() {
        return 8;
    }

    @Override
    public synchronized int read(int vcpu, int port, int size) {
        switch (port - base) {
            case THR:
                return (lcr & LCR_DLAB) != 0 ? dll : 0;
            case IER:
                return (lcr & LCR_DLAB) != 0 ? dlm : ier;
            case IIR_FCR:
                return ((fcr & 1) != 0 ? 0xC0 : 0) | 0x01; // no interrupt pending
            case LCR:
                return lcr;
            case MCR:
                return mcr;
            case LSR:
                return LSR_THRE_TEMT; // transmitter always ready, no input
            case MSR:
                return (mcr & 0x10) != 0 ? 0xF0 : 0xB0; // loopback shows outputs; otherwise CTS, DSR, DCD
            case SCR:
                return scr;
            default:
                return 0xFF;
        }
    }

    @Override
    public void write(int vcpu, int port, int size, int value) {
        String complete = null;
        synchronized (this) {
            int v = value & 0xFF;
            switch (port - base) {
                case THR:
                    if ((lcr & LCR_DLAB) != 0) {
                        dll = v;
                    } else {
                        complete = transmit(v);
                    }
                    break;
                case IER:
                    if ((lcr & LCR_DLAB) != 0) {
                        dlm = v;
                    } else {
                        ier = v & 0x0F;
                    }
                    break;
                case IIR_FCR:
                    fcr = v & 0xC9;
                    break;
                case LCR:
                    lcr = v;
                    break;
                case MCR:
                    mcr = v & 0x1F;
                    break;
                case SCR:
                    scr = v;
                    break;
                default:
                    break; // LSR and MSR are read-only
            }
        }
        if (complete != null) {
            lineSink.accept(complete);
        }
    }

    private String transmit(int b) {
        txBytes++;
        if (b == '\n' || line.size() >= MAX_LINE) {
            String s = line.toString(StandardCharsets.UTF_8);
            line.reset();
            if (b != '\n') {
                line.write(b);
            }
            return s;
        }
        line.write(b);
        return null;
    }

    public synchronized long txBytes() {
        return txBytes;
    }

    @Override
    public SectionSchema<SerialState> schema() {
        return SCHEMA;
    }

    @Override
    public String instanceId() {
        return name;
    }

    @Override
    public synchronized SerialState saveState() {
        return SerialState.newBuilder().setIer(ier).setLcr(lcr).setMcr(mcr).setScr(scr).setDll(dll).setDlm(dlm)
                .setFcr(fcr).setTxBytes(txBytes).setPartialLine(ByteString.copyFrom(line.toByteArray())).build();
    }

    @Override
    public void validateState(SerialState s) throws StateException {
        if (s.getPartialLine().size() > MAX_LINE) {
            throw new StateException(SCHEMA.name(), name, "partial_line: " + s.getPartialLine().size()
                    + " bytes exceeds " + MAX_LINE);
        }
    }

    @Override
    public synchronized void restoreState(SerialState s) throws StateException {
        validateState(s);
        ier = s.getIer() & 0x0F;
        lcr = s.getLcr() & 0xFF;
        mcr = s.getMcr() & 0x1F;
        scr = s.getScr() & 0xFF;
        dll = s.getDll() & 0xFF;
        dlm = s.getDlm() & 0xFF;
        fcr = s.getFcr() & 0xC9;
        txBytes = s.getTxBytes();
        line.reset();
        line.writeBytes(s.getPartialLine().toByteArray());
    }
}
