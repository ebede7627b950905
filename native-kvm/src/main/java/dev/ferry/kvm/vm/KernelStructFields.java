package dev.ferry.kvm.vm;

import com.google.protobuf.Descriptors.FieldDescriptor;
import com.google.protobuf.Message;
import com.sun.jna.Structure;
import dev.ferry.linux.NativeStruct;
import java.lang.reflect.Field;
import java.util.List;
import java.util.Set;

/**
 * Copies the scalar members of a kernel structure to and from the protobuf fields of the same names. The JNA
 * field names are the C member names (StructLayoutTest checks them against the kernel headers), and the state
 * messages use the same names, so one rule maps both ways and a member the message lacks is an error, not a
 * silently dropped value. Unsigned C types become unsigned protobuf values ({@code __u8} 0..255, and so on).
 */
final class KernelStructFields {
    /** Members that carry no state. */
    private static final Set<String> PADDING = Set.of("pad", "pad0", "reserved");

    private KernelStructFields() {}

    /** Sets every scalar member of {@code s} (except padding and {@code skip}) on {@code b}. */
    static void toProto(NativeStruct s, Message.Builder b, Set<String> skip) {
        for (Field f : scalarMembers(s.getClass(), skip)) {
            FieldDescriptor d = protoField(b.getDescriptorForType(), f);
            b.setField(d, widen(read(f, s), f.getType(), d));
        }
    }

    /** Sets every scalar member of {@code s} (except padding and {@code skip}) from {@code m}, which must fit. */
    static void fromProto(Message m, NativeStruct s, Set<String> skip) {
        for (Field f : scalarMembers(s.getClass(), skip)) {
            Number v = (Number) m.getField(protoField(m.getDescriptorForType(), f));
            try {
                if (f.getType() == byte.class) {
                    f.setByte(s, v.byteValue());
                } else if (f.getType() == short.class) {
                    f.setShort(s, v.shortValue());
                } else if (f.getType() == int.class) {
                    f.setInt(s, v.intValue());
                } else {
                    f.setLong(s, v.longValue());
                }
            } catch (IllegalAccessException e) {
                throw new IllegalStateException(e);
            }
        }
    }

    /**
     * Adds to {@code problems} every field of {@code m} whose value does not fit its C member of {@code type},
     * named by {@code path} (e.g. {@code "pit.channels[1].mode"}).
     */
    static void checkFits(Message m, Class<? extends NativeStruct> type, Set<String> skip, String path,
            List<String> problems) {
        for (Field f : scalarMembers(type, skip)) {
            long max = f.getType() == byte.class ? 0xff : f.getType() == short.class ? 0xffff : -1;
            if (max < 0) {
                continue; // 32- and 64-bit members take any value of their protobuf field
            }
            long v = ((Number) m.getField(protoField(m.getDescriptorForType(), f))).longValue() & 0xffff_ffffL;
            if (v > max) {
                problems.add(path + "." + f.getName() + ": " + v + " does not fit the kernel's "
                        + (max == 0xff ? "__u8" : "__u16") + " (at most " + max + ")");
            }
        }
    }

    /**
     * The members of each structure class in C order, looked up once: device state is saved and restored inside a
     * switchover's downtime. The fields are NativeStruct's, opened there (no caller check on each get and set).
     */
    private static final ClassValue<List<Field>> MEMBERS = new ClassValue<>() {
        @Override
        protected List<Field> computeValue(Class<?> type) {
            java.util.Map<String, Field> byName = new java.util.HashMap<>();
            NativeStruct.fields(type.asSubclass(NativeStruct.class)).forEach(f -> byName.put(f.getName(), f));
            return java.util.Arrays.stream(type.getAnnotation(Structure.FieldOrder.class).value())
                    .filter(n -> !PADDING.contains(n))
                    .map(n -> {
                        Field f = byName.get(n);
                        if (f == null) {
                            throw new IllegalStateException(type.getSimpleName() + " has no public field " + n);
                        }
                        return f;
                    })
                    .toList();
        }
    };

    private static List<Field> scalarMembers(Class<?> type, Set<String> skip) {
        List<Field> all = MEMBERS.get(type);
        return skip.isEmpty() ? all : all.stream().filter(f -> !skip.contains(f.getName())).toList();
    }

    private static FieldDescriptor protoField(com.google.protobuf.Descriptors.Descriptor d, Field f) {
        FieldDescriptor fd = byName(d, f.getName());
        if (fd == null) {
            throw new IllegalStateException(d.getFullName() + " has no field for C member " + f.getName() + " of "
                    + f.getDeclaringClass().getSimpleName());
        }
        return fd;
    }

    /** Each message type's fields by name, indexed once (findFieldByName builds the full name and asks the pool). */
    private static final java.util.Map<com.google.protobuf.Descriptors.Descriptor, java.util.Map<String, FieldDescriptor>>
            BY_NAME = new java.util.concurrent.ConcurrentHashMap<>();

    /** The field of {@code d} named {@code name}, or null. */
    static FieldDescriptor byName(com.google.protobuf.Descriptors.Descriptor d, String name) {
        return BY_NAME.computeIfAbsent(d, t -> t.getFields().stream()
                .collect(java.util.stream.Collectors.toUnmodifiableMap(FieldDescriptor::getName, x -> x))).get(name);
    }

    private static long read(Field f, Object s) {
        try {
            return ((Number) f.get(s)).longValue();
        } catch (IllegalAccessException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The C value as its protobuf field holds it: unsigned members zero-extended. */
    private static Object widen(long v, Class<?> cType, FieldDescriptor d) {
        long u = cType == byte.class ? v & 0xff : cType == short.class ? v & 0xffff : v;
        return d.getJavaType() == FieldDescriptor.JavaType.INT ? (Object) (int) u : (Object) u;
    }
}
