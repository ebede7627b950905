package dev.ferry.devices;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.ferry.guest.GuestAbi;
import dev.ferry.kvm.state.v1.SerialState;
import dev.ferry.state.StateException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The UART through its port-I/O interface, and across save → bytes or JSON → restore into a fresh one. */
class Serial16550Test {
    static final int BASE = GuestAbi.PORT_COM1;
    static final int THR = 0, DLL = 0, IER = 1, DLM = 1, FCR = 2, IIR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;
    static final int DLAB = 0x80;

    final List<String> console = new ArrayList<>();
    final Serial16550 uart = new Serial16550("com1", BASE, console::add);

    /** Everything the guest can read back; the divisor latch is read with DLAB set, the rest with it clear. */
    record Regs(int dll, int dlm, int ier, int iir, int lcr, int mcr, int lsr, int msr, int scr) {}

    static Regs registers(Serial16550 s) {
        int lcr = in(s, LCR);
        out(s, LCR, lcr | DLAB);
        int dll = in(s, DLL), dlm = in(s, DLM);
        out(s, LCR, lcr & ~DLAB);
        Regs r = new Regs(dll, dlm, in(s, IER), in(s, IIR), lcr, in(s, MCR), in(s, LSR), in(s, MSR), in(s, SCR));
        out(s, LCR, lcr);
        return r;
    }

    /** What a guest driver does: 115200 baud (divisor 1, DLM 2 to tell it apart), 8N1, FIFO, loopback, scratch. */
    static void program(Serial16550 s) {
        out(s, LCR, DLAB | 0x03);
        out(s, DLL, 0x01);
        out(s, DLM, 0x02);
        out(s, LCR, 0x03);
        out(s, IER, 0xFF); // only the low 4 bits exist
        out(s, FCR, 0x07); // enable + clear FIFOs: only "enabled" sticks
        out(s, MCR, 0x1B);
        out(s, SCR, 0x5A);
    }

    @Test
    void registersResetToDefaultsAndReadBackAsProgrammed() {
        assertEquals(new Regs(12, 0, 0, 0x01, 0, 0, 0x60, 0xB0, 0), registers(uart));
        program(uart);
        Regs programmed = new Regs(1, 2, 0x0F, 0xC1, 0x03, 0x1B, 0x60, 0xF0, 0x5A);
        assertEquals(programmed, registers(uart));
        out(uart, LSR, 0);
        out(uart, MSR, 0);
        assertEquals(programmed, registers(uart), "LSR and MSR are read-only");
        assertEquals(0, in(uart, THR), "no input");
    }

    @Test
    void theConsoleGetsWholeLinesAndOverlongLinesAreCut() {
        print(uart, "hello\nwor");
        assertEquals(List.of("hello"), console);
        print(uart, "ld\n\n");
        assertEquals(List.of("hello", "world", ""), console);
        assertEquals(13, uart.txBytes());
        print(uart, "x".repeat(4096));
        assertEquals(3, console.size(), "a line of 4096 bytes still waits");
        print(uart, "y\n");
        assertEquals(List.of("x".repeat(4096), "y"), console.subList(3, 5));
    }

    @ParameterizedTest
    @ValueSource(strings = {"bytes", "json"})
    void aLineStartedBeforeTheSaveEndsAfterTheRestore(String form) throws StateException {
        program(uart);
        send(uart, "hello\ncaf\u00e9".getBytes(StandardCharsets.UTF_8), 0, 10); // stops inside the é
        SerialState saved = uart.saveState();
        SerialState carried = form.equals("json") ? SectionRoundTrip.throughJson(uart, saved)
                : SectionRoundTrip.throughBytes(uart, saved);
        assertEquals(saved, carried);

        List<String> restoredConsole = new ArrayList<>();
        Serial16550 restored = new Serial16550("com1", BASE, restoredConsole::add);
        restored.validateState(carried);
        restored.restoreState(carried);
        assertEquals(registers(uart), registers(restored));
        assertEquals(uart.txBytes(), restored.txBytes());

        byte[] rest = {(byte) 0xA9, '\n'};
        send(uart, rest, 0, 2);
        send(restored, rest, 0, 2);
        assertEquals(List.of("hello", "caf\u00e9"), console);
        assertEquals(List.of("caf\u00e9"), restoredConsole);
        assertEquals(uart.saveState(), restored.saveState());
    }

    @Test
    void validateStateRefusesAPartialLineLongerThanTheDeviceKeepsAndNothingChanges() throws StateException {
        Serial16550 full = new Serial16550("com1", BASE, line -> {});
        print(full, "x".repeat(4096));
        SerialState longest = full.saveState();
        uart.validateState(longest); // the longest partial line the device itself saves
        SerialState tooLong = longest.toBuilder()
                .setPartialLine(longest.getPartialLine().concat(ByteString.copyFromUtf8("x"))).build();

        program(uart);
        print(uart, "abc");
        SerialState before = uart.saveState();
        StateException e = assertThrows(StateException.class, () -> uart.validateState(tooLong));
        assertTrue(e.getMessage().contains("device.serial/com1"), e.getMessage());
        assertThrows(StateException.class, () -> uart.restoreState(tooLong));
        assertEquals(before, uart.saveState());
        print(uart, "\n");
        assertEquals(List.of("abc"), console);
    }

    @Test
    void restoreKeepsOnlyTheBitsEachRegisterHas() throws StateException {
        uart.restoreState(SerialState.newBuilder().setIer(0x1FF).setLcr(0x17F).setMcr(0xFF).setScr(0x1A5)
                .setDll(0x101).setDlm(0x2FE).setFcr(0xFF).build());
        assertEquals(new Regs(0x01, 0xFE, 0x0F, 0xC1, 0x7F, 0x1F, 0x60, 0xF0, 0xA5), registers(uart));
    }

    static int in(Serial16550 s, int offset) {
        return s.read(0, BASE + offset, 1);
    }

    static void out(Serial16550 s, int offset, int value) {
        s.write(0, BASE + offset, 1, value);
    }

    static void print(Serial16550 s, String text) {
        byte[] b = text.getBytes(StandardCharsets.UTF_8);
        send(s, b, 0, b.length);
    }

    static void send(Serial16550 s, byte[] bytes, int from, int to) {
        for (int i = from; i < to; i++) {
            out(s, THR, bytes[i]);
        }
    }
}
