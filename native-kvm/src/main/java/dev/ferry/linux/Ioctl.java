package dev.ferry.linux;

/**
 * The ioctl request encoding of asm-generic/ioctl.h (used by x86-64):
 * {@code dir << 30 | size << 16 | type << 8 | nr}, with 2 direction bits, 14 size bits, 8 type
 * bits and 8 number bits. Results are unsigned 32-bit values held in a {@code long}.
 */
public final class Ioctl {
    private Ioctl() {}

    public static final int _IOC_NRBITS = 8;
    public static final int _IOC_TYPEBITS = 8;
    public static final int _IOC_SIZEBITS = 14;
    public static final int _IOC_DIRBITS = 2;

    public static final int _IOC_NRSHIFT = 0;
    public static final int _IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS;
    public static final int _IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS;
    public static final int _IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS;

    public static final int _IOC_NONE = 0;
    public static final int _IOC_WRITE = 1; /* userland is writing and kernel is reading */
    public static final int _IOC_READ = 2; /* userland is reading and kernel is writing */

    public static long _IOC(int dir, int type, int nr, int size) {
        if ((type & ~0xff) != 0 || (nr & ~0xff) != 0) {
            throw new IllegalArgumentException("ioctl type/nr out of range: " + type + "/" + nr);
        }
        if (size < 0 || size >= (1 << _IOC_SIZEBITS)) {
            throw new IllegalArgumentException("ioctl argument size does not fit in 14 bits: " + size);
        }
        return ((long) dir << _IOC_DIRSHIFT)
                | ((long) type << _IOC_TYPESHIFT)
                | ((long) nr << _IOC_NRSHIFT)
                | ((long) size << _IOC_SIZESHIFT);
    }

    public static long _IO(int type, int nr) {
        return _IOC(_IOC_NONE, type, nr, 0);
    }

    public static long _IOR(int type, int nr, int size) {
        return _IOC(_IOC_READ, type, nr, size);
    }

    public static long _IOW(int type, int nr, int size) {
        return _IOC(_IOC_WRITE, type, nr, size);
    }

    public static long _IOWR(int type, int nr, int size) {
        return _IOC(_IOC_READ | _IOC_WRITE, type, nr, size);
    }

    public static int _IOC_DIR(long request) {
        return (int) ((request >>> _IOC_DIRSHIFT) & ((1 << _IOC_DIRBITS) - 1));
    }

    public static int _IOC_TYPE(long request) {
        return (int) ((request >>> _IOC_TYPESHIFT) & ((1 << _IOC_TYPEBITS) - 1));
    }

    public static int _IOC_NR(long request) {
        return (int) ((request >>> _IOC_NRSHIFT) & ((1 << _IOC_NRBITS) - 1));
    }

    public static int _IOC_SIZE(long request) {
        return (int) ((request >>> _IOC_SIZESHIFT) & ((1 << _IOC_SIZEBITS) - 1));
    }
}
