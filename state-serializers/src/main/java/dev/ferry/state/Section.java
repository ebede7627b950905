package dev.ferry.state;

import com.google.protobuf.ByteString;
import java.util.regex.Pattern;

/**
 * One saved section: the state of one component (a vCPU, the VM-level state, a device instance) as raw payload
 * bytes plus the header needed to route and version-check it. Immutable; {@code payload} is the protobuf encoding
 * of the section's message type at {@code version}.
 *
 * @param name             kind of component, e.g. {@code "kvm.vcpu"}; {@code [A-Za-z0-9][A-Za-z0-9._-]*}, at most 128 chars
 * @param instanceId       which instance, e.g. {@code "0"}, {@code "com1"}, {@code ""} for singletons; at most 128
 *                         printable ASCII characters without {@code '/'} or space
 * @param version          format version the payload was written at, at least 1
 * @param minReaderVersion oldest reader schema version able to read the payload, {@code 1 <= minReaderVersion <= version}
 * @param required         whether a reader without a component for this section must refuse the stream
 * @param payload          the encoded state
 */
public record Section(String name, String instanceId, int version, int minReaderVersion, boolean required,
                      ByteString payload) {

    /** Longest accepted section name and instance id. */
    public static final int MAX_ID_LENGTH = 128;

    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]*");
    private static final Pattern INSTANCE = Pattern.compile("[\\x21-\\x2e\\x30-\\x7e]*");

    /** @throws IllegalArgumentException if a field is out of range (see the component descriptions) */
    public Section {
        String problem = problem(name, instanceId, version, minReaderVersion);
        if (problem != null) {
            throw new IllegalArgumentException("section " + label(name, instanceId) + ": " + problem);
        }
        if (payload == null) {
            throw new IllegalArgumentException("section " + label(name, instanceId) + ": payload is null");
        }
    }

    /** A copy of the payload bytes. */
    public byte[] payloadBytes() {
        return payload.toByteArray();
    }

    /** {@code name/instanceId}, or just {@code name} for a singleton (empty instance id). */
    public String label() {
        return label(name, instanceId);
    }

    /** {@code name/instanceId}, or just {@code name} when the instance id is empty. */
    public static String label(String name, String instanceId) {
        return instanceId == null || instanceId.isEmpty() ? display(name) : display(name) + "/" + display(instanceId);
    }

    /** Makes an identifier from an untrusted stream safe to print: escapes non-printable characters, truncates. */
    private static String display(String s) {
        if (s == null) {
            return "<null>";
        }
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < s.length() && sb.length() < 80; i++) {
            char c = s.charAt(i);
            if (c >= 0x20 && c < 0x7f) {
                sb.append(c);
            } else {
                sb.append(String.format("\\u%04x", (int) c));
            }
        }
        if (sb.length() >= 80) {
            sb.append("...");
        }
        return sb.length() == 0 ? "\"\"" : sb.toString();
    }

    /** Why these header fields are invalid, or null when they are fine. */
    static String problem(String name, String instanceId, int version, int minReaderVersion) {
        if (name == null || name.isEmpty()) {
            return "section name is empty";
        }
        if (name.length() > MAX_ID_LENGTH || !NAME.matcher(name).matches()) {
            return "invalid section name (expected [A-Za-z0-9][A-Za-z0-9._-]*, at most " + MAX_ID_LENGTH
                    + " characters)";
        }
        if (instanceId == null) {
            return "instance id is null (use \"\" for a singleton)";
        }
        if (instanceId.length() > MAX_ID_LENGTH || !INSTANCE.matcher(instanceId).matches()) {
            return "invalid instance id (expected at most " + MAX_ID_LENGTH
                    + " printable ASCII characters without '/' or space)";
        }
        if (version < 1) {
            return "invalid version " + Integer.toUnsignedString(version) + " (versions start at 1)";
        }
        if (minReaderVersion < 1 || minReaderVersion > version) {
            return "invalid minReaderVersion " + Integer.toUnsignedString(minReaderVersion)
                    + " (must be between 1 and the section version " + version + ")";
        }
        return null;
    }
}
