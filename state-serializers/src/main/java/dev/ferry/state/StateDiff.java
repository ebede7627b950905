package dev.ferry.state;

import com.google.protobuf.ByteString;
import com.google.protobuf.Descriptors.EnumValueDescriptor;
import com.google.protobuf.Descriptors.FieldDescriptor;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.protobuf.UnknownFieldSet;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * Which sections, and which fields within them, differ between two state streams ({@code ferry state diff A B}).
 *
 * <p>One line per difference, in A's section order, then sections only in B in B's order:
 * <pre>
 *   - device.rtc (only in A)
 *   kvm.vcpu/0: section version: 1 -> 2
 *   kvm.vcpu/0: regs.rip: 0x10000 -> 0x10040
 *   kvm.vcpu/0: msrs[3]: &lt;absent&gt; -> 0x1b
 *   kvm.vm: irq_routes["gsi4"].pin: 4 -> 5
 *   device.blob/0: payload: 512 bytes -> 512 bytes (first difference at byte 17)
 *   + device.serial/com1 (only in B)
 * </pre>
 * Field paths use protobuf JSON names, as in {@link StateJson}. Unsigned 64-bit integers are shown in hex, other
 * integers in decimal, bytes in hex when short. Sections whose schema is not given, or whose payload does not
 * parse, are compared as bytes. Section order does not count as a difference.
 */
public final class StateDiff {
    private static final int SHORT_BYTES = 32;

    private StateDiff() {
    }

    /**
     * The differences from {@code a} to {@code b}; empty when they hold the same sections with the same content.
     *
     * @throws IllegalArgumentException if two different schemas in {@code schemas} share a name
     */
    public static List<String> diff(SectionSet a, SectionSet b, Collection<SectionSchema<?>> schemas) {
        Map<String, SectionSchema<?>> byName = Schemas.byName(schemas);
        List<String> out = new ArrayList<>();
        for (Section sa : a) {
            Section sb = b.get(sa.name(), sa.instanceId()).orElse(null);
            if (sb == null) {
                out.add("- " + sa.label() + " (only in A)");
            } else {
                section(sa, sb, byName.get(sa.name()), out);
            }
        }
        for (Section sb : b) {
            if (a.get(sb.name(), sb.instanceId()).isEmpty()) {
                out.add("+ " + sb.label() + " (only in B)");
            }
        }
        return out;
    }

    private static void section(Section a, Section b, SectionSchema<?> schema, List<String> out) {
        String label = a.label() + ": ";
        if (a.version() != b.version()) {
            out.add(label + "section version: " + a.version() + " -> " + b.version());
        }
        if (a.minReaderVersion() != b.minReaderVersion()) {
            out.add(label + "section minReaderVersion: " + a.minReaderVersion() + " -> " + b.minReaderVersion());
        }
        if (a.required() != b.required()) {
            out.add(label + "section required: " + a.required() + " -> " + b.required());
        }
        if (a.payload().equals(b.payload())) {
            return;
        }
        if (schema != null) {
            try {
                Message ma = readable(schema, a);
                Message mb = readable(schema, b);
                int before = out.size();
                message(label, "", ma, mb, out);
                if (out.size() == before) {
                    out.add(label + "payload encoding differs, field values are equal");
                }
                return;
            } catch (InvalidProtocolBufferException e) {
                // fall through to the byte comparison
            }
        }
        out.add(label + "payload: " + a.payload().size() + " bytes -> " + b.payload().size() + " bytes"
                + firstDifference(a.payload(), b.payload()));
    }

    /**
     * The section as a restore would see it: upgraded to the schema's version when this build reads it, so an
     * old section compares field by field with a current one; else just parsed.
     */
    private static Message readable(SectionSchema<?> schema, Section s) throws InvalidProtocolBufferException {
        try {
            return schema.decode(s);
        } catch (StateException e) {
            return schema.parser().parseFrom(s.payload());
        }
    }

    private static void message(String label, String path, Message a, Message b, List<String> out) {
        for (FieldDescriptor f : a.getDescriptorForType().getFields()) {
            String p = path.isEmpty() ? f.getJsonName() : path + "." + f.getJsonName();
            if (f.isMapField()) {
                map(label, p, f, a, b, out);
            } else if (f.isRepeated()) {
                int na = a.getRepeatedFieldCount(f);
                int nb = b.getRepeatedFieldCount(f);
                for (int i = 0; i < Math.max(na, nb); i++) {
                    value(label, p + "[" + i + "]", f, i < na ? a.getRepeatedField(f, i) : null,
                            i < nb ? b.getRepeatedField(f, i) : null, out);
                }
            } else if (f.hasPresence()) {
                value(label, p, f, a.hasField(f) ? a.getField(f) : null, b.hasField(f) ? b.getField(f) : null, out);
            } else {
                value(label, p, f, a.getField(f), b.getField(f), out);
            }
        }
        UnknownFieldSet ua = a.getUnknownFields();
        UnknownFieldSet ub = b.getUnknownFields();
        if (!ua.equals(ub)) {
            TreeSet<Integer> numbers = new TreeSet<>();
            for (int n : ua.asMap().keySet()) {
                if (!ua.getField(n).equals(ub.getField(n))) {
                    numbers.add(n);
                }
            }
            for (int n : ub.asMap().keySet()) {
                if (!ub.getField(n).equals(ua.getField(n))) {
                    numbers.add(n);
                }
            }
            out.add(label + (path.isEmpty() ? "" : path + ": ") + "unknown fields differ (field numbers "
                    + numbers + ", not in this build's schema)");
        }
    }

    private static void map(String label, String path, FieldDescriptor f, Message a, Message b, List<String> out) {
        Map<Object, Object> ma = entries(a, f);
        Map<Object, Object> mb = entries(b, f);
        FieldDescriptor keyField = f.getMessageType().findFieldByNumber(1);
        FieldDescriptor valueField = f.getMessageType().findFieldByNumber(2);
        TreeSet<Object> keys = new TreeSet<>(StateDiff::compareKeys);
        keys.addAll(ma.keySet());
        keys.addAll(mb.keySet());
        for (Object k : keys) {
            value(label, path + "[" + format(keyField, k) + "]", valueField, ma.get(k), mb.get(k), out);
        }
    }

    private static Map<Object, Object> entries(Message m, FieldDescriptor f) {
        Map<Object, Object> map = new LinkedHashMap<>();
        for (int i = 0; i < m.getRepeatedFieldCount(f); i++) {
            // Reflection view of a map entry: key is field 1, value field 2 (enums as descriptors, like elsewhere).
            Message entry = (Message) m.getRepeatedField(f, i);
            FieldDescriptor kf = entry.getDescriptorForType().findFieldByNumber(1);
            FieldDescriptor vf = entry.getDescriptorForType().findFieldByNumber(2);
            map.put(entry.getField(kf), entry.getField(vf));
        }
        return map;
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private static int compareKeys(Object x, Object y) {
        return ((Comparable) x).compareTo(y);
    }

    /** Compares one value; null means absent/unset. */
    private static void value(String label, String path, FieldDescriptor f, Object a, Object b, List<String> out) {
        if (f.getJavaType() == FieldDescriptor.JavaType.MESSAGE && a != null && b != null) {
            message(label, path, (Message) a, (Message) b, out);
            return;
        }
        if (a == null ? b == null : a.equals(b)) {
            return;
        }
        if (f.getJavaType() == FieldDescriptor.JavaType.MESSAGE) {
            // Present on one side only: say so, then list its non-default contents against an empty message.
            Message present = (Message) (a != null ? a : b);
            out.add(label + path + ": " + (a == null ? "<absent> -> <present>" : "<present> -> <absent>"));
            Message empty = present.getDefaultInstanceForType();
            message(label, path, a == null ? empty : present, a == null ? present : empty, out);
            return;
        }
        String suffix = "";
        if (a instanceof ByteString x && b instanceof ByteString y
                && (x.size() > SHORT_BYTES || y.size() > SHORT_BYTES)) {
            suffix = firstDifference(x, y);
        }
        out.add(label + path + ": " + format(f, a) + " -> " + format(f, b) + suffix);
    }

    /** A value for display; null means absent. */
    static String format(FieldDescriptor f, Object v) {
        if (v == null) {
            return "<absent>";
        }
        switch (f.getType()) {
            case UINT64:
            case FIXED64:
                return "0x" + Long.toHexString((Long) v);
            case UINT32:
            case FIXED32:
                return Integer.toUnsignedString((Integer) v);
            case STRING:
                return quote((String) v);
            case BYTES: {
                ByteString bytes = (ByteString) v;
                if (bytes.size() > SHORT_BYTES) {
                    return "<" + bytes.size() + " bytes>";
                }
                StringBuilder sb = new StringBuilder("<hex");
                for (int i = 0; i < bytes.size(); i++) {
                    sb.append(i == 0 ? " " : "").append(String.format("%02x", bytes.byteAt(i)));
                }
                return sb.append('>').toString();
            }
            case ENUM:
                EnumValueDescriptor e = (EnumValueDescriptor) v;
                return e.getIndex() < 0 ? String.valueOf(e.getNumber()) : e.getName();
            default:
                return String.valueOf(v);
        }
    }

    private static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20 || c == 0x7f) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.append('"').toString();
    }

    private static String firstDifference(ByteString a, ByteString b) {
        int n = Math.min(a.size(), b.size());
        for (int i = 0; i < n; i++) {
            if (a.byteAt(i) != b.byteAt(i)) {
                return " (first difference at byte " + i + ")";
            }
        }
        return a.size() == b.size() ? "" : " (one is a prefix of the other)";
    }
}
