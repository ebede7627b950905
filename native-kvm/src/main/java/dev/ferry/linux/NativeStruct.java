package dev.ferry.linux;

import com.sun.jna.Pointer;
import com.sun.jna.Structure;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.List;

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

    /**
     * Each structure class's public instance fields, superclass members first (what JNA's own lookup returns),
     * found once and made accessible. JNA looked them up again for every new instance, and each reflective get
     * and set of a field it had not opened walked the caller's stack: together most of the CPU of saving and
     * restoring a vCPU's state, which a switchover does inside its downtime.
     */
    private static final ClassValue<List<Field>> FIELDS = new ClassValue<>() {
        @Override
        protected List<Field> computeValue(Class<?> type) {
            List<Field> all = new ArrayList<>();
            for (Class<?> c = type; c != Structure.class; c = c.getSuperclass()) {
                List<Field> own = new ArrayList<>();
                for (Field f : c.getDeclaredFields()) {
                    if (!Modifier.isStatic(f.getModifiers()) && Modifier.isPublic(f.getModifiers())) {
                        f.setAccessible(true);
                        own.add(f);
                    }
                }
                all.addAll(0, own);
            }
            return List.copyOf(all);
        }
    };

    /** {@code type}'s public instance fields, superclass members first, opened once (shared: do not modify). */
    public static List<Field> fields(Class<? extends NativeStruct> type) {
        return FIELDS.get(type);
    }

    @Override
    protected List<Field> getFieldList() {
        return new ArrayList<>(FIELDS.get(getClass())); // JNA sorts the list it gets in place
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
