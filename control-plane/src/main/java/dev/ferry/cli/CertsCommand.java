package dev.ferry.cli;

import dev.ferry.security.CertificateAuthority;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code ferry certs}: certificates for trying Ferry out over mutual TLS. */
@Command(name = "certs", mixinStandardHelpOptions = true, description = "Certificates for trying Ferry out.",
        subcommands = CertsCommand.Init.class)
final class CertsCommand {
    @Command(name = "init", mixinStandardHelpOptions = true,
            description = "Create a CA (ca.crt, ca.key) and agent, controller and operator certificates "
                    + "(NAME.crt, NAME.key; keys mode 0600) in DIR, valid for localhost and 127.0.0.1.")
    static final class Init implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "DIR", description = "Directory to write the PEM files to.")
        Path dir;

        @Option(names = "--dns", paramLabel = "NAME", description = "Another DNS name for every certificate (repeatable).")
        List<String> dns = new ArrayList<>();

        @Option(names = "--ip", paramLabel = "ADDRESS", description = "Another IP address for every certificate (repeatable).")
        List<String> ips = new ArrayList<>();

        @Override
        public Integer call() throws Exception {
            CertificateAuthority.init(dir, dns, ips);
            System.out.println("ferry: wrote ca.crt, ca.key, agent.crt/.key, controller.crt/.key and operator.crt/.key to "
                    + dir + " (keep ca.key off the nodes)");
            return 0;
        }
    }
}
