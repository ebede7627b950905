package dev.ferry.state;

import com.google.protobuf.Message;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * The stateful components of one VM, and the saving and restoring of all of them at once.
 *
 * <p>{@link #save()} captures every component, in phase order ({@link RestorePhase}) then registration order.
 * {@link #restore} works in two steps. First it validates the entire stream without touching any component:
 * every section must belong to a registered component unless it is optional, every required component must have a
 * section, every section's version must be readable, every payload must parse and upgrade, and every component's
 * {@link Stateful#validateState} must accept its state. All problems found are reported together and nothing is
 * restored. Only then are the states applied, in phase order then registration order.
 *
 * <p>All methods are synchronized: registration normally happens on one thread while the VM is built, save and
 * restore on another while it is paused, and the lock makes the component list safely visible across them.
 */
public final class StateRegistry {
    private static final System.Logger LOG = System.getLogger(StateRegistry.class.getName());

    /** In registration order. */
    private final List<Stateful<?>> components = new ArrayList<>();
    private final Map<SectionSet.Key, Stateful<?>> byKey = new HashMap<>();
    /** One schema per section name, in order of first registration. */
    private final Map<String, SectionSchema<?>> schemas = new LinkedHashMap<>();

    /**
     * Adds a component.
     *
     * @throws IllegalArgumentException if a component with the same section name and instance id is already
     *                                  registered, the instance id is invalid, or another component registered a
     *                                  different schema under the same section name
     */
    public synchronized void register(Stateful<?> component) {
        SectionSchema<?> schema = component.schema();
        String instanceId = component.instanceId();
        if (schema == null) {
            throw new IllegalArgumentException("component " + component + " has no schema");
        }
        String problem = Section.problem(schema.name(), instanceId, schema.version(), schema.minReaderVersion());
        if (problem != null) {
            throw new IllegalArgumentException("component " + Section.label(schema.name(), instanceId) + ": " + problem);
        }
        SectionSet.Key key = new SectionSet.Key(schema.name(), instanceId);
        if (byKey.containsKey(key)) {
            throw new IllegalArgumentException("component " + key + " is already registered");
        }
        SectionSchema<?> known = schemas.get(schema.name());
        if (known != null && !known.sameDefinitionAs(schema)) {
            throw new IllegalArgumentException("component " + key + " has schema " + schema
                    + " but another component registered " + known + " under the same name");
        }
        schemas.putIfAbsent(schema.name(), schema);
        byKey.put(key, component);
        components.add(component);
    }

    /** The schemas of the registered components, one per section name, in order of first registration. */
    public synchronized List<SectionSchema<?>> schemas() {
        return List.copyOf(schemas.values());
    }

    /**
     * Captures the state of every component (call with the VM paused): phase order, then registration order.
     *
     * @throws IllegalStateException if a component returns null or a message of the wrong type
     */
    public synchronized SectionSet save() {
        List<Section> sections = new ArrayList<>(components.size());
        for (Stateful<?> c : restoreOrder()) {
            sections.add(saveOne(c));
        }
        return SectionSet.of(sections);
    }

    private static <M extends Message> Section saveOne(Stateful<M> c) {
        M state = c.saveState();
        String label = Section.label(c.schema().name(), c.instanceId());
        if (state == null) {
            throw new IllegalStateException("component " + label + " returned no state from saveState()");
        }
        try {
            return c.schema().encode(c.instanceId(), state);
        } catch (IllegalArgumentException e) {
            throw new IllegalStateException("component " + label + ": saveState() result rejected: " + e.getMessage(), e);
        }
    }

    /**
     * Validates the whole stream, then restores every component that has a section (call with the VM paused).
     * Unknown optional sections are skipped; components whose optional section is absent are left as they are.
     *
     * @throws StateException if validation fails (then no component was touched; the message lists every problem),
     *                        or if a component's {@link Stateful#restoreState} fails (the message then says how many
     *                        components were already restored: the VM must not be resumed)
     */
    public synchronized void restore(SectionSet sections) throws StateException {
        List<Prepared<?>> plan = plan(sections);
        for (int i = 0; i < plan.size(); i++) {
            Prepared<?> p = plan.get(i);
            try {
                p.apply();
            } catch (StateException | RuntimeException e) {
                throw new StateException(p.component.schema().name(), p.component.instanceId(),
                        "restore failed after " + i + " of " + plan.size() + " sections were applied; the VM is"
                                + " in an inconsistent state and must not be resumed: " + e.getMessage(), e);
            }
        }
    }

    /**
     * Everything {@link #restore} checks before it applies anything: every required section present and
     * known, every payload decodable and accepted by its component's {@link Stateful#validateState}.
     * Touches no component.
     *
     * @throws StateException listing every problem
     */
    public synchronized void validate(SectionSet sections) throws StateException {
        plan(sections);
    }

    private List<Prepared<?>> plan(SectionSet sections) throws StateException {
        List<StateException> problems = new ArrayList<>();
        for (Section s : sections) {
            if (byKey.containsKey(new SectionSet.Key(s.name(), s.instanceId()))) {
                continue;
            }
            if (s.required()) {
                problems.add(new StateException(s.name(), s.instanceId(), unknownSection(s)));
            } else {
                LOG.log(System.Logger.Level.INFO, "skipping optional section {0} (version {1}): {2}", s.label(),
                        s.version(), unknownSection(s));
            }
        }
        List<Prepared<?>> plan = new ArrayList<>();
        for (Stateful<?> c : restoreOrder()) {
            SectionSchema<?> schema = c.schema();
            Optional<Section> section = sections.get(schema.name(), c.instanceId());
            if (section.isEmpty()) {
                if (schema.required()) {
                    problems.add(new StateException(schema.name(), c.instanceId(), "required section is missing"
                            + " from the stream (the source did not save it: different VM configuration,"
                            + " or a Ferry build without this component)"));
                } else {
                    LOG.log(System.Logger.Level.INFO, "optional section {0} absent from the stream; component left"
                            + " unchanged", Section.label(schema.name(), c.instanceId()));
                }
                continue;
            }
            try {
                plan.add(prepare(c, section.get()));
            } catch (StateException e) {
                problems.add(e);
            }
        }
        if (!problems.isEmpty()) {
            throw StateException.of("state refused, nothing was restored", problems);
        }
        return plan;
    }

    private String unknownSection(Section s) {
        String kind = s.required() ? "required section" : "section";
        List<String> instances = components.stream()
                .filter(c -> c.schema().name().equals(s.name()))
                .map(c -> c.instanceId().isEmpty() ? "\"\"" : c.instanceId())
                .collect(Collectors.toList());
        if (!instances.isEmpty()) {
            return kind + " has no matching component in this VM (it has " + s.name() + " instances "
                    + String.join(", ", instances) + "): the destination VM is configured differently";
        }
        return kind + " is unknown here: no " + s.name() + " component is registered (the destination VM lacks"
                + " this component, or runs a Ferry build that does not know it)";
    }

    private static <M extends Message> Prepared<M> prepare(Stateful<M> c, Section section) throws StateException {
        M state;
        try {
            state = c.schema().decode(section);
            c.validateState(state);
        } catch (RuntimeException e) {
            throw new StateException(section.name(), section.instanceId(), "validation failed unexpectedly: " + e, e);
        }
        return new Prepared<>(c, state);
    }

    private List<Stateful<?>> restoreOrder() {
        List<Stateful<?>> ordered = new ArrayList<>(components);
        ordered.sort(Comparator.comparing(c -> c.schema().phase())); // stable: registration order within a phase
        return ordered;
    }

    /** A validated state, ready to apply. */
    private record Prepared<M extends Message>(Stateful<M> component, M state) {
        void apply() throws StateException {
            component.restoreState(state);
        }
    }
}
