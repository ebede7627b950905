package dev.ferry.state;

import java.util.Collection;
import java.util.HashMap;
import java.util.Map;

/** Indexing of a caller's schema collection by section name. */
final class Schemas {
    private Schemas() {
    }

    /** @throws IllegalArgumentException if two different schemas share a name */
    static Map<String, SectionSchema<?>> byName(Collection<SectionSchema<?>> schemas) {
        Map<String, SectionSchema<?>> map = new HashMap<>();
        for (SectionSchema<?> s : schemas) {
            SectionSchema<?> prev = map.putIfAbsent(s.name(), s);
            if (prev != null && !prev.sameDefinitionAs(s)) {
                throw new IllegalArgumentException("two different schemas named " + s.name() + ": " + prev + ", " + s);
            }
        }
        return map;
    }
}
