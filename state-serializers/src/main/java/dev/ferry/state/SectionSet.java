package dev.ferry.state;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The decoded form of a state stream: an ordered list of {@link Section}s in which each
 * {@code (name, instanceId)} pair occurs at most once. Immutable.
 *
 * <p>The order is the order the sections were saved (or decoded) in; {@link StateRegistry#save()} produces phase
 * order, then registration order. Restore does not depend on it: the registry applies sections in its own order.
 */
public final class SectionSet implements Iterable<Section> {
    private static final SectionSet EMPTY = new SectionSet(List.of(), Map.of());

    private final List<Section> sections;
    private final Map<Key, Section> byKey;

    private SectionSet(List<Section> sections, Map<Key, Section> byKey) {
        this.sections = sections;
        this.byKey = byKey;
    }

    /** The empty set. */
    public static SectionSet empty() {
        return EMPTY;
    }

    /**
     * A set of these sections, in this order.
     *
     * @throws IllegalArgumentException if two sections share a name and instance id, or an element is null
     */
    public static SectionSet of(List<Section> sections) {
        try {
            return validated(sections);
        } catch (StateException e) {
            throw new IllegalArgumentException(e.getMessage(), e);
        }
    }

    /** As {@link #of(List)}. */
    public static SectionSet of(Section... sections) {
        return of(List.of(sections));
    }

    /** Like {@link #of(List)}, for sections that come from a stream: problems are {@link StateException}s. */
    static SectionSet validated(List<Section> sections) throws StateException {
        List<Section> copy = new ArrayList<>(sections.size());
        Map<Key, Section> byKey = new HashMap<>();
        for (Section s : sections) {
            if (s == null) {
                throw new StateException("section list contains null");
            }
            if (byKey.putIfAbsent(new Key(s.name(), s.instanceId()), s) != null) {
                throw new StateException(s.name(), s.instanceId(), "appears more than once in the stream");
            }
            copy.add(s);
        }
        return new SectionSet(Collections.unmodifiableList(copy), Collections.unmodifiableMap(byKey));
    }

    /** The sections, in order. Unmodifiable. */
    public List<Section> sections() {
        return sections;
    }

    /** The section with this name and instance id, if present. */
    public Optional<Section> get(String name, String instanceId) {
        return Optional.ofNullable(byKey.get(new Key(name, instanceId)));
    }

    /** Number of sections. */
    public int size() {
        return sections.size();
    }

    /** Whether there are no sections. */
    public boolean isEmpty() {
        return sections.isEmpty();
    }

    @Override
    public Iterator<Section> iterator() {
        return sections.iterator();
    }

    /** Equal when the same sections appear in the same order. */
    @Override
    public boolean equals(Object o) {
        return o instanceof SectionSet other && sections.equals(other.sections);
    }

    @Override
    public int hashCode() {
        return sections.hashCode();
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("SectionSet[");
        for (int i = 0; i < sections.size(); i++) {
            Section s = sections.get(i);
            sb.append(i == 0 ? "" : ", ").append(s.label()).append(" v").append(s.version())
                    .append(" (").append(s.payload().size()).append(" bytes)");
        }
        return sb.append(']').toString();
    }

    /** Identity of a section within a stream. */
    record Key(String name, String instanceId) {
        @Override
        public String toString() {
            return Section.label(name, instanceId);
        }
    }
}
