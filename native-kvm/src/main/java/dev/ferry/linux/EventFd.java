package dev.ferry.linux;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * An eventfd (sys/eventfd.h): a counter fd to wake a thread blocked in poll(2), e.g. to stop a
 * userfaultfd loop ({@link Userfaultfd#pollWith(int, int)}).
 */
public final class EventFd implements AutoCloseable {
    private final AtomicInteger fd;

    private EventFd(int fd) {
        this.fd = new AtomicInteger(fd);
    }

    /** eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK). */
    public static EventFd create() {
        return create(LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK);
    }

    public static EventFd create(int flags) {
        return new EventFd(NativeException.check(LibC.eventfd(0, flags), "eventfd"));
    }

    public int fd() {
        int f = fd.get();
        if (f < 0) {
            throw new IllegalStateException("EventFd is closed");
        }
        return f;
    }

    /** Adds {@code value} to the counter (makes the fd readable). */
    public void signal(long value) {
        Memory m = new Memory(8);
        m.setLong(0, value);
        NativeException.check(LibC.write(fd(), m, 8), "write(eventfd)");
    }

    public void signal() {
        signal(1);
    }

    /** Reads and resets the counter; 0 if it was 0 (non-blocking fd). */
    public long drain() {
        Memory m = new Memory(8);
        long n = LibC.read(fd(), m, 8);
        if (n < 0) {
            int errno = Native.getLastError();
            if (errno == Errno.EAGAIN) {
                return 0;
            }
            throw new NativeException("read(eventfd)", errno);
        }
        return m.getLong(0);
    }

    @Override
    public void close() {
        Fd.close(fd.getAndSet(-1), "eventfd");
    }
}
