package dev.ferry.state;

import com.google.protobuf.Message;
import java.util.ArrayList;
import java.util.List;

/** A fake component that records its calls into a shared journal. */
final class Recording<M extends Message> implements Stateful<M> {
    private final SectionSchema<M> schema;
    private final String instanceId;
    private final List<String> journal;
    private M state;
    private StateException refuse;

    Recording(SectionSchema<M> schema, String instanceId, M state, List<String> journal) {
        this.schema = schema;
        this.instanceId = instanceId;
        this.state = state;
        this.journal = journal;
    }

    static List<String> journal() {
        return new ArrayList<>();
    }

    /** Makes validateState refuse every state. */
    Recording<M> refusing(String why) {
        this.refuse = new StateException(schema.name(), instanceId, why);
        return this;
    }

    String label() {
        return Section.label(schema.name(), instanceId);
    }

    M state() {
        return state;
    }

    @Override
    public SectionSchema<M> schema() {
        return schema;
    }

    @Override
    public String instanceId() {
        return instanceId;
    }

    @Override
    public M saveState() {
        journal.add("save " + label());
        return state;
    }

    @Override
    public void validateState(M s) throws StateException {
        if (refuse != null) {
            throw refuse;
        }
    }

    @Override
    public void restoreState(M s) {
        journal.add("restore " + label());
        this.state = s;
    }

    @Override
    public String toString() {
        return "Recording[" + label() + "]";
    }
}
