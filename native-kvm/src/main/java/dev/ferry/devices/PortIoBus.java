package dev.ferry.devices;

import dev.ferry.guest.PortIo;

import java.util.ArrayList;
import java.util.List;

/** Routes port I/O exits to devices. Reads from unclaimed ports return all ones, as on real hardware. */
public final class PortIoBus implements PortIo {
    private final List<PortIoDevice> devices = new ArrayList<>();
    private volatile PortIoDevice[] byPort = new PortIoDevice[0];
    private long unclaimedAccesses;

    public synchronized void attach(PortIoDevice d) {
        for (PortIoDevice o : devices) {
            if (d.basePort() < o.basePort() + o.portCount() && o.basePort() < d.basePort() + d.portCount()) {
                throw new IllegalArgumentException(String.format("ports 0x%x..0x%x of %s overlap %s", d.basePort(),
                        d.basePort() + d.portCount() - 1, d.getClass().getSimpleName(), o.getClass().getSimpleName()));
            }
        }
        devices.add(d);
        int max = devices.stream().mapToInt(x -> x.basePort() + x.portCount()).max().orElse(0);
        PortIoDevice[] table = new PortIoDevice[max];
        for (PortIoDevice x : devices) {
            for (int p = x.basePort(); p < x.basePort() + x.portCount(); p++) {
                table[p] = x;
            }
        }
        byPort = table;
    }

    @Override
    public int read(int vcpu, int port, int size) {
        PortIoDevice d = lookup(port);
        if (d == null) {
            unclaimed();
            return size == 4 ? -1 : (1 << (size * 8)) - 1;
        }
        return d.read(vcpu, port, size);
    }

    @Override
    public void write(int vcpu, int port, int size, int value) {
        PortIoDevice d = lookup(port);
        if (d == null) {
            unclaimed();
            return;
        }
        d.write(vcpu, port, size, value);
    }

    private PortIoDevice lookup(int port) {
        PortIoDevice[] t = byPort;
        return port >= 0 && port < t.length ? t[port] : null;
    }

    private synchronized void unclaimed() {
        unclaimedAccesses++;
    }

    public synchronized long unclaimedAccesses() {
        return unclaimedAccesses;
    }
}
