package dev.ferry.linux;

import com.sun.jna.Pointer;
import com.sun.jna.Structure;

/**
 * Base of the fixed-size kernel structures in this package: a JNA {@link Structure} with
 * {@code @FieldOrder} in C order, Java field names equal to the C member names (so the layout
 * test can ask gcc for {@code offsetof} of every field by name), and explicit padding members.
 */
public abstract class NativeStruct extends Structure {
    protected NativeStruct() {
        super();
    }

    protected NativeStruct(Pointer p) {
        super(p);
    }

    /** Byte offset of a (top-level) field, as JNA lays it out. */
    public int offsetOf(String field) {
        return fieldOffset(field);
    }

    /** Writes the Java fields to native memory and returns a copy of the raw bytes. */
    public byte[] toBytes() {
        write();
        return getPointer().getByteArray(0, size());
    }

    /** Replaces the native bytes with {@code raw} (exactly {@link #size()} long) and reads the fields. */
    public void fromBytes(byte[] raw) {
        if (raw.length != size()) {
            throw new IllegalArgumentException(getClass().getSimpleName() + " is " + size() + " bytes, got " + raw.length);
        }
        getPointer().write(0, raw, 0, raw.length);
        read();
    }
}
