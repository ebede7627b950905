package dev.ferry.cli;

import dev.ferry.backends.Backends;
import dev.ferry.vm.Snapshot;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateCodec;
import dev.ferry.state.StateDiff;
import dev.ferry.state.StateException;
import dev.ferry.state.StateJson;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

/** {@code ferry state ...}: read device-state files the way a person debugging a restore needs. */
@Command(name = "state", description = "Inspect saved VM and device state.",
        subcommands = {StateCommand.Dump.class, StateCommand.Diff.class})
final class StateCommand {
    private StateCommand() {}

    /** Reads a state file, or the state file of a snapshot directory. */
    static SectionSet read(Path p) throws IOException, StateException {
        Path file = Files.isDirectory(p) ? p.resolve(Snapshot.STATE_FILE) : p;
        return StateCodec.decode(Files.readAllBytes(file));
    }

    @Command(name = "dump", mixinStandardHelpOptions = true, description = "Print a state file as JSON.")
    static final class Dump implements Callable<Integer> {
        @Parameters(index = "0", description = "State file, or snapshot directory.")
        Path file;

        @Override
        public Integer call() throws Exception {
            System.out.println(StateJson.toJson(read(file), Backends.allSchemas()));
            return 0;
        }
    }

    @Command(name = "diff", mixinStandardHelpOptions = true,
            description = "Show which sections and fields differ between two state files. Exit status 1 when they differ.")
    static final class Diff implements Callable<Integer> {
        @Parameters(index = "0", description = "First state file or snapshot directory.")
        Path a;

        @Parameters(index = "1", description = "Second state file or snapshot directory.")
        Path b;

        @Override
        public Integer call() throws Exception {
            List<String> lines = StateDiff.diff(read(a), read(b), Backends.allSchemas());
            if (lines.isEmpty()) {
                System.out.println("no differences");
                return 0;
            }
            lines.forEach(System.out::println);
            return 1;
        }
    }
}
