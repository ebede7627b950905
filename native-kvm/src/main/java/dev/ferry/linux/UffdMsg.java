package dev.ferry.linux;

import com.sun.jna.Pointer;
import com.sun.jna.Structure;
import com.sun.jna.Structure.FieldOrder;
import com.sun.jna.Union;

/**
 * {@code struct uffd_msg} (linux/userfaultfd.h, packed, 32 bytes): what read(2) on a userfaultfd
 * returns. {@link #read()} selects the union member from {@link #event}. The fault-handling loop
 * does not use this class but {@link Userfaultfd#readEvent(UffdEvent)}, which reads the same bytes
 * at the OFF_* offsets below (checked against gcc by StructLayoutTest) without allocating.
 */
@FieldOrder({"event", "reserved1", "reserved2", "reserved3", "arg"})
public class UffdMsg extends NativeStruct {
    public static final int SIZE = 32;
    public static final int OFF_EVENT = 0;
    public static final int OFF_ARG = 8;
    public static final int OFF_PAGEFAULT_FLAGS = OFF_ARG;
    public static final int OFF_PAGEFAULT_ADDRESS = OFF_ARG + 8;
    public static final int OFF_PAGEFAULT_PTID = OFF_ARG + 16;
    public static final int OFF_FORK_UFD = OFF_ARG;
    public static final int OFF_REMAP_FROM = OFF_ARG;
    public static final int OFF_REMAP_TO = OFF_ARG + 8;
    public static final int OFF_REMAP_LEN = OFF_ARG + 16;
    public static final int OFF_REMOVE_START = OFF_ARG;
    public static final int OFF_REMOVE_END = OFF_ARG + 8;

    @FieldOrder({"ptid"})
    public static class Feat extends Union {
        public int ptid;
    }

    @FieldOrder({"flags", "address", "feat"})
    public static class Pagefault extends Structure {
        public long flags;
        public long address;
        public Feat feat = new Feat();
    }

    @FieldOrder({"ufd"})
    public static class Fork extends Structure {
        public int ufd;
    }

    @FieldOrder({"from", "to", "len"})
    public static class Remap extends Structure {
        public long from;
        public long to;
        public long len;
    }

    @FieldOrder({"start", "end"})
    public static class Remove extends Structure {
        public long start;
        public long end;
    }

    @FieldOrder({"reserved1", "reserved2", "reserved3"})
    public static class Reserved extends Structure {
        /* unused reserved fields */
        public long reserved1;
        public long reserved2;
        public long reserved3;
    }

    @FieldOrder({"pagefault", "fork", "remap", "remove", "reserved"})
    public static class Arg extends Union {
        public Pagefault pagefault = new Pagefault();
        public Fork fork = new Fork();
        public Remap remap = new Remap();
        public Remove remove = new Remove();
        public Reserved reserved = new Reserved();
    }

    public byte event;
    public byte reserved1;
    public short reserved2;
    public int reserved3;
    public Arg arg = new Arg();

    public UffdMsg() {}

    public UffdMsg(Pointer p) {
        super(p);
        read();
    }

    /** Reads the event byte, selects the matching union member, then reads the structure. */
    @Override
    public void read() {
        int ev = getPointer().getByte(OFF_EVENT) & 0xff;
        arg.setType(switch (ev) {
            case UffdIoctls.UFFD_EVENT_PAGEFAULT -> Pagefault.class;
            case UffdIoctls.UFFD_EVENT_FORK -> Fork.class;
            case UffdIoctls.UFFD_EVENT_REMAP -> Remap.class;
            case UffdIoctls.UFFD_EVENT_REMOVE, UffdIoctls.UFFD_EVENT_UNMAP -> Remove.class;
            default -> Reserved.class;
        });
        super.read();
    }
}
