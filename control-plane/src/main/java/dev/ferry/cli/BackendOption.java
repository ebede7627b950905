package dev.ferry.cli;

import dev.ferry.backends.Backends;
import dev.ferry.vm.GuestBackend;
import picocli.CommandLine.Option;

/** {@code --backend auto|kvm|process}, shared by every command that runs guests. */
final class BackendOption {
    @Option(names = "--backend", defaultValue = "auto", converter = BackendOption.ChoiceConverter.class,
            description = "What runs guests: kvm (needs /dev/kvm), process (host threads, Linux 6.7+) or auto"
                    + " (kvm where /dev/kvm opens, else process; default).")
    Backends.Choice choice = Backends.Choice.AUTO;

    /** Opens the chosen backends; a BackendUnavailableException says in one line what is missing. */
    Backends open() {
        return Backends.open(choice);
    }

    /** The one backend a single guest runs on. */
    GuestBackend openOne() {
        return open().preferred();
    }

    static final class ChoiceConverter implements picocli.CommandLine.ITypeConverter<Backends.Choice> {
        @Override
        public Backends.Choice convert(String value) {
            return Backends.Choice.parse(value);
        }
    }
}
