package dev.ferry.vm;

import dev.ferry.state.SectionSchema;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateException;
import java.util.List;
import java.util.function.Consumer;

/** Creates the guests of one {@link Backend} on this host; see {@link Backends} for choosing one. */
public interface GuestBackend {
    Backend kind();

    /** What this host offers, probed once when the backend was opened. */
    HostCapabilities capabilities();

    /** Every state section a VM of this backend saves: what a migration peer must be able to read. */
    List<SectionSchema<?>> stateSchemas();

    /** A fresh guest that boots when {@link GuestVm#start()} is called; {@code console} gets its serial output. */
    GuestVm create(VmConfig config, Consumer<String> console);

    /**
     * An empty guest of the given shape that receives its memory and state from elsewhere (a
     * migration's destination, a restore): fill its memory, {@link GuestVm#restoreState}, then start.
     *
     * @throws IncompatibleShapeException if this host cannot give the guest that shape (its TSC rate)
     */
    GuestVm createIncoming(VmShape shape, Consumer<String> console);

    /** {@link #createIncoming} shaped like the VM that saved {@code sections}. */
    default GuestVm createForRestore(SectionSet sections, Consumer<String> console) throws StateException {
        VmConfigSection.Saved saved = VmConfigSection.read(sections);
        if (saved.backend() != kind()) {
            throw new StateException("the state was saved by the " + saved.backend().cliName()
                    + " backend; this is the " + kind().cliName() + " backend");
        }
        return createIncoming(saved.shape(), console);
    }
}
