package dev.ferry.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import picocli.CommandLine;
import picocli.CommandLine.Model.OptionSpec;

/**
 * {@code ferry agent --config agent.yaml}: a YAML mapping whose keys are the agent's long option names without the
 * dashes ({@code control: 0.0.0.0:7001}, {@code tls-cert: /etc/ferry/tls/tls.crt}, {@code insecure: true}), so a
 * DaemonSet can mount a ConfigMap instead of a long command line. The file's options go before the command line's,
 * and an option given on the command line wins: the file's value for it is dropped. An unknown key is an error,
 * never ignored.
 */
public final class AgentConfigFile {
    private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

    private AgentConfigFile() {}

    /** {@code args} with the config file's options added, when they run {@code agent --config FILE}. */
    public static String[] expand(String[] args) throws IOException {
        if (args.length == 0 || !args[0].equals("agent")) {
            return args;
        }
        String file = null;
        for (int i = 1; i < args.length; i++) {
            if (args[i].equals("--config") && i + 1 < args.length) {
                file = args[i + 1];
            } else if (args[i].startsWith("--config=")) {
                file = args[i].substring("--config=".length());
            }
        }
        if (file == null) {
            return args;
        }
        List<String> out = new ArrayList<>(List.of("agent"));
        out.addAll(options(Path.of(file), args));
        out.addAll(List.of(args).subList(1, args.length));
        return out.toArray(String[]::new);
    }

    private static List<String> options(Path file, String[] given) throws IOException {
        JsonNode root;
        try {
            root = YAML.readTree(file.toFile());
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IOException(file + " is not valid YAML: " + e.getOriginalMessage());
        } catch (java.io.FileNotFoundException e) {
            throw new IOException("config file " + file + " not found");
        }
        if (root == null || root.isMissingNode() || root.isNull()) {
            return List.of();
        }
        if (!root.isObject()) {
            throw new IOException(file + " must be a mapping of agent options (control: HOST:PORT, ...)");
        }
        CommandLine.Model.CommandSpec agent = new CommandLine(new AgentCommand()).getCommandSpec();
        List<String> out = new ArrayList<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String name = "--" + e.getKey();
            OptionSpec option = agent.findOption(name);
            if (option == null || name.equals("--config") || option.usageHelp() || option.versionHelp()) {
                throw new IOException(file + ": '" + e.getKey() + "' is not an agent option (see ferry agent --help)");
            }
            if (givenOnCommandLine(given, option)) {
                continue; // flags win
            }
            JsonNode v = e.getValue();
            if (!v.isValueNode() || v.isNull()) {
                throw new IOException(file + ": '" + e.getKey() + "' must be a single value");
            }
            if (option.arity().max() == 0) { // a flag: true adds it, false leaves it out
                if (!v.isBoolean()) {
                    throw new IOException(file + ": '" + e.getKey() + "' is a flag: true or false");
                }
                if (v.asBoolean()) {
                    out.add(name);
                }
            } else {
                out.add(name);
                out.add(v.asText());
            }
        }
        return out;
    }

    private static boolean givenOnCommandLine(String[] args, OptionSpec option) {
        for (String a : args) {
            for (String n : option.names()) {
                if (a.equals(n) || a.startsWith(n + "=")) {
                    return true;
                }
            }
        }
        return false;
    }
}
