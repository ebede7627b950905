package dev.ferry.state;

import com.google.protobuf.ByteString;
import com.google.protobuf.Descriptors.Descriptor;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.protobuf.Parser;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.function.UnaryOperator;

/**
 * Describes one kind of section: its name, the protobuf message type of its payload, its current format version,
 * the oldest version this build can still read (and the upgrade steps that get there), the version it asks readers
 * to have, its restore phase and whether it is required. One constant per component kind, shared by all its
 * instances. Immutable and thread-safe (provided the upgrade steps are).
 *
 * <h2>Version rules</h2>
 * A section written at version {@code W} with declared {@code minReaderVersion R} is readable by this schema
 * (current version {@code C}, oldest readable {@code O}) iff
 * <ul>
 *   <li>{@code O <= W <= C}: the payload is parsed as the current message type and the upgrade steps
 *       {@code W -> W+1 -> ... -> C} are applied in order; or</li>
 *   <li>{@code W > C} and {@code R <= C}: a newer writer made only additive changes; fields this build does not know
 *       are kept by protobuf as unknown fields and otherwise ignored.</li>
 * </ul>
 * Anything else is refused with a {@link StateException} naming the section, W, R, C and O.
 * See the module README for when to bump the version.
 *
 * @param <M> the payload message type (its current version)
 */
public final class SectionSchema<M extends Message> {
    private final String name;
    private final M defaultInstance;
    private final int version;
    private final int minReadableVersion;
    private final int minReaderVersion;
    private final RestorePhase phase;
    private final boolean required;
    /** from-version -> step producing from-version + 1; exactly the versions minReadableVersion .. version-1. */
    private final Map<Integer, UnaryOperator<M>> upgrades;

    private SectionSchema(Builder<M> b, int minReadable) {
        this.name = b.name;
        this.defaultInstance = b.defaultInstance;
        this.version = b.version;
        this.minReadableVersion = minReadable;
        this.minReaderVersion = b.minReaderVersion == null ? b.version : b.minReaderVersion;
        this.phase = b.phase;
        this.required = b.required;
        this.upgrades = Map.copyOf(b.upgrades);
    }

    /**
     * Starts describing a section kind.
     *
     * @param name            section name, e.g. {@code "kvm.vcpu"}, {@code "device.serial"}
     * @param defaultInstance any instance of the payload message type, e.g. {@code VcpuState.getDefaultInstance()}
     */
    public static <M extends Message> Builder<M> builder(String name, M defaultInstance) {
        return new Builder<>(name, defaultInstance);
    }

    /** The section name. */
    public String name() {
        return name;
    }

    /** The current format version: what this build writes. */
    public int version() {
        return version;
    }

    /** The oldest format version this build can read (by upgrading it). */
    public int minReadableVersion() {
        return minReadableVersion;
    }

    /** The oldest reader version able to read what this build writes; written into every section. */
    public int minReaderVersion() {
        return minReaderVersion;
    }

    /** When this section is restored relative to others. */
    public RestorePhase phase() {
        return phase;
    }

    /** Whether a stream lacking this section is refused on restore (otherwise the component is left as it is). */
    public boolean required() {
        return required;
    }

    /** The default instance of the payload message type. */
    public M defaultInstance() {
        return defaultInstance;
    }

    /** The payload message descriptor. */
    public Descriptor descriptor() {
        return defaultInstance.getDescriptorForType();
    }

    /** Whether a section written at {@code writtenVersion} declaring {@code minReaderVersion} is readable. */
    public boolean canRead(int writtenVersion, int minReaderVersion) {
        return incompatibility(writtenVersion, minReaderVersion) == null;
    }

    /**
     * Encodes a state as a section of this kind at the current version (deterministic protobuf encoding).
     *
     * @throws IllegalArgumentException if the message is not of this schema's type or the instance id is invalid
     */
    public Section encode(String instanceId, M state) {
        Objects.requireNonNull(state, "state");
        if (state.getDescriptorForType() != descriptor()) {
            throw new IllegalArgumentException("section " + Section.label(name, instanceId) + ": state is a "
                    + state.getDescriptorForType().getFullName() + ", expected " + descriptor().getFullName());
        }
        return new Section(name, instanceId, version, minReaderVersion, required, Payloads.serialize(state));
    }

    /**
     * Decodes a section of this kind into the current version of the message: checks the version rules, parses the
     * payload and applies the upgrade steps.
     *
     * @throws StateException           if the version cannot be read, the payload does not parse or an upgrade fails
     * @throws IllegalArgumentException if the section has a different name
     */
    public M decode(Section section) throws StateException {
        if (!section.name().equals(name)) {
            throw new IllegalArgumentException("section " + section.label() + " given to schema " + name);
        }
        String incompatible = incompatibility(section.version(), section.minReaderVersion());
        if (incompatible != null) {
            throw new StateException(name, section.instanceId(), incompatible);
        }
        M message = parse(section.instanceId(), section.version(), section.payload());
        for (int from = section.version(); from < version; from++) {
            M upgraded;
            try {
                upgraded = upgrades.get(from).apply(message);
            } catch (RuntimeException e) {
                throw new StateException(name, section.instanceId(), "upgrade step from version " + from + " to "
                        + (from + 1) + " failed: " + e, e);
            }
            if (upgraded == null || upgraded.getDescriptorForType() != descriptor()) {
                throw new StateException(name, section.instanceId(), "upgrade step from version " + from + " to "
                        + (from + 1) + " returned " + (upgraded == null ? "null"
                        : "a " + upgraded.getDescriptorForType().getFullName()) + " instead of a "
                        + descriptor().getFullName() + " (bug in the schema definition)");
            }
            message = upgraded;
        }
        return message;
    }

    @SuppressWarnings("unchecked")
    private M parse(String instanceId, int writtenVersion, ByteString payload) throws StateException {
        try {
            return (M) defaultInstance.getParserForType().parseFrom(payload);
        } catch (InvalidProtocolBufferException e) {
            throw new StateException(name, instanceId, "payload (" + payload.size() + " bytes, version "
                    + writtenVersion + ") is not a valid " + descriptor().getFullName() + ": " + e.getMessage(), e);
        }
    }

    /** The parser of the payload type. */
    @SuppressWarnings("unchecked")
    public Parser<M> parser() {
        return (Parser<M>) defaultInstance.getParserForType();
    }

    /** Why a section at {@code w} declaring {@code r} cannot be read, or null when it can. */
    String incompatibility(int w, int r) {
        if (w >= minReadableVersion && w <= version) {
            return null;
        }
        if (w > version && r <= version) {
            return null;
        }
        String written = "written at version " + Integer.toUnsignedString(w) + " for readers of version >= "
                + Integer.toUnsignedString(r);
        String reads = "this build's " + name + " schema is at version " + version + " and reads versions "
                + minReadableVersion + " to " + version;
        if (w > version) {
            return written + ", but " + reads + ": the writer made an incompatible change;"
                    + " restore with a Ferry build whose " + name + " version is at least " + Integer.toUnsignedString(r);
        }
        return written + ", but " + reads + ": version " + Integer.toUnsignedString(w)
                + " is too old for this build; restore with an older Ferry build that still reads it";
    }

    /** Same name, type, versions, phase and required flag (upgrade steps cannot be compared). */
    boolean sameDefinitionAs(SectionSchema<?> o) {
        return name.equals(o.name) && descriptor() == o.descriptor() && version == o.version
                && minReadableVersion == o.minReadableVersion && minReaderVersion == o.minReaderVersion
                && phase == o.phase && required == o.required;
    }

    @Override
    public String toString() {
        return "SectionSchema[" + name + " " + descriptor().getFullName() + " v" + version + " (reads v"
                + minReadableVersion + ".." + version + ", needs reader >= v" + minReaderVersion + ") " + phase
                + (required ? " required" : " optional") + "]";
    }

    /** Builds a {@link SectionSchema}; {@link #phase(RestorePhase)} must be set, everything else has a default. */
    public static final class Builder<M extends Message> {
        private final String name;
        private final M defaultInstance;
        private int version = 1;
        private Integer minReadableVersion;
        private Integer minReaderVersion;
        private RestorePhase phase;
        private boolean required = true;
        private final Map<Integer, UnaryOperator<M>> upgrades = new TreeMap<>();

        @SuppressWarnings("unchecked")
        private Builder(String name, M defaultInstance) {
            String problem = Section.problem(name, "", 1, 1);
            if (problem != null) {
                throw new IllegalArgumentException("schema " + name + ": " + problem);
            }
            this.name = name;
            this.defaultInstance = (M) Objects.requireNonNull(defaultInstance, "defaultInstance")
                    .getDefaultInstanceForType();
        }

        /** The current format version (what this build writes). Default 1. */
        public Builder<M> version(int current) {
            this.version = current;
            return this;
        }

        /**
         * The oldest version this build can read. Every version from it to {@code current - 1} needs an upgrade step.
         * Default: the oldest version from which the registered upgrade steps reach the current version.
         */
        public Builder<M> minReadableVersion(int oldest) {
            this.minReadableVersion = oldest;
            return this;
        }

        /**
         * The oldest reader version that can correctly read what this build writes (written into every section).
         * Keep it below the current version when the last changes were additive, so older builds can still restore.
         * Default: the current version.
         */
        public Builder<M> minReaderVersion(int oldestReader) {
            this.minReaderVersion = oldestReader;
            return this;
        }

        /** When the section is restored. Required. */
        public Builder<M> phase(RestorePhase phase) {
            this.phase = Objects.requireNonNull(phase, "phase");
            return this;
        }

        /**
         * Whether the section is required (default true): a reader refuses a stream lacking a section it requires,
         * and a stream containing a required section the reader has no component for.
         */
        public Builder<M> required(boolean required) {
            this.required = required;
            return this;
        }

        /**
         * Registers the step that turns a message read at {@code fromVersion} into one valid at
         * {@code fromVersion + 1}. The step receives and returns the current message type; values of fields removed
         * since {@code fromVersion} are not available to it (keep such fields, deprecated, while a step needs them).
         */
        public Builder<M> upgrade(int fromVersion, UnaryOperator<M> step) {
            Objects.requireNonNull(step, "step");
            if (upgrades.putIfAbsent(fromVersion, step) != null) {
                throw new IllegalArgumentException("schema " + name + ": two upgrade steps from version " + fromVersion);
            }
            return this;
        }

        /** @throws IllegalArgumentException if the versions or upgrade steps are inconsistent */
        public SectionSchema<M> build() {
            String where = "schema " + name + ": ";
            if (phase == null) {
                throw new IllegalArgumentException(where + "phase is not set");
            }
            if (version < 1) {
                throw new IllegalArgumentException(where + "version must be at least 1, got " + version);
            }
            if (minReaderVersion != null && (minReaderVersion < 1 || minReaderVersion > version)) {
                throw new IllegalArgumentException(where + "minReaderVersion must be between 1 and version "
                        + version + ", got " + minReaderVersion);
            }
            for (int from : upgrades.keySet()) {
                if (from < 1 || from >= version) {
                    throw new IllegalArgumentException(where + "upgrade step from version " + from
                            + " is outside 1.." + (version - 1));
                }
            }
            int oldest = version;
            while (oldest > 1 && upgrades.containsKey(oldest - 1)) {
                oldest--;
            }
            if (minReadableVersion != null) {
                if (minReadableVersion < 1 || minReadableVersion > version) {
                    throw new IllegalArgumentException(where + "minReadableVersion must be between 1 and version "
                            + version + ", got " + minReadableVersion);
                }
                if (minReadableVersion < oldest) {
                    throw new IllegalArgumentException(where + "minReadableVersion " + minReadableVersion
                            + " needs an upgrade step from version " + (oldest - 1));
                }
                oldest = minReadableVersion;
            }
            for (int from : upgrades.keySet()) {
                if (from < oldest) {
                    throw new IllegalArgumentException(where + "upgrade step from version " + from
                            + " is unreachable (oldest readable version is " + oldest + "); remove it");
                }
            }
            return new SectionSchema<>(this, oldest);
        }
    }
}
