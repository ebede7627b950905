package dev.ferry.cli;

import java.util.function.Consumer;

/** Where the guest's serial console goes. */
final class Console {
    private Console() {}

    static Consumer<String> sink(boolean toStderr) {
        return toStderr ? line -> System.err.println("[guest] " + line) : line -> { };
    }
}
