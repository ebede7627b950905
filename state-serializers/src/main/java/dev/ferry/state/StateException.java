package dev.ferry.state;

import java.util.List;
import java.util.Optional;

/**
 * A state stream, or one section of it, cannot be decoded, validated or restored.
 *
 * <p>The message is meant for the operator: it names the section ({@code name/instance}) when there is one and
 * says what is wrong and, where it helps, what to do. When restore validation finds several problems they are all
 * reported at once: {@link #problems()} lists them and the message contains one line per problem.
 */
public class StateException extends Exception {
    private static final long serialVersionUID = 1L;

    private final String section;
    private final String instanceId;
    private final transient List<StateException> problems;

    /** A problem not tied to one section (for example a corrupted envelope). */
    public StateException(String message) {
        this(null, null, message, null);
    }

    /** A problem not tied to one section, with its cause. */
    public StateException(String message, Throwable cause) {
        this(null, null, message, cause);
    }

    /** A problem with one section; the message is prefixed with {@code section name/instance: }. */
    public StateException(String section, String instanceId, String message) {
        this(section, instanceId, message, null);
    }

    /** A problem with one section, with its cause. */
    public StateException(String section, String instanceId, String message, Throwable cause) {
        super(section == null ? message : "section " + Section.label(section, instanceId) + ": " + message, cause);
        this.section = section;
        this.instanceId = instanceId;
        this.problems = List.of();
    }

    private StateException(String summary, List<StateException> problems) {
        super(summary, problems.get(0));
        this.section = problems.get(0).section;
        this.instanceId = problems.get(0).instanceId;
        this.problems = List.copyOf(problems);
        for (int i = 1; i < problems.size(); i++) {
            addSuppressed(problems.get(i));
        }
    }

    /**
     * Combines several problems found while validating a stream into one exception whose message lists them all.
     * A single problem is returned as it is, with {@code context} prefixed.
     */
    static StateException of(String context, List<StateException> problems) {
        if (problems.isEmpty()) {
            throw new IllegalArgumentException("no problems");
        }
        StringBuilder sb = new StringBuilder(context);
        if (problems.size() == 1) {
            sb.append(": ").append(problems.get(0).getMessage());
        } else {
            sb.append(" (").append(problems.size()).append(" problems):");
            for (StateException p : problems) {
                sb.append("\n  - ").append(p.getMessage());
            }
        }
        return new StateException(sb.toString(), problems);
    }

    /** Name of the section concerned (the first one, for a combined exception), if any. */
    public Optional<String> section() {
        return Optional.ofNullable(section);
    }

    /** Instance id of the section concerned (the first one, for a combined exception), if any. */
    public Optional<String> instanceId() {
        return Optional.ofNullable(section == null ? null : instanceId);
    }

    /**
     * The individual problems when this exception reports the result of validating a whole stream (one element
     * if there was only one problem); empty for an exception about a single problem.
     */
    public List<StateException> problems() {
        return problems == null ? List.of() : problems;
    }
}
