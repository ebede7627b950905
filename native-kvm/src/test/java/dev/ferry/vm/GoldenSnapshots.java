package dev.ferry.vm;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Locale;
import java.util.Objects;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** What tests that restore the golden snapshots ({@code GoldenSnapshotTest}) need to know about them. */
public final class GoldenSnapshots {
    private static final Pattern TSC_KHZ = Pattern.compile("\"tscKhz\": (\\d+)");

    private GoldenSnapshots() {
    }

    /** The classpath directory of {@code release}'s snapshot on {@code kind}, ending in '/'. */
    public static String resourceDir(String release, Backend kind) {
        return "/golden/vm/" + release + "/" + kind.name().toLowerCase(Locale.ROOT) + "/";
    }

    /** The TSC rate (kHz) the snapshot's guest ran at, as its expected-state.json records it; 0 when it does not. */
    public static int tscKhz(String release, Backend kind) throws IOException {
        String json = resourceDir(release, kind) + "expected-state.json";
        try (InputStream in = Objects.requireNonNull(GoldenSnapshots.class.getResourceAsStream(json), json)) {
            Matcher m = TSC_KHZ.matcher(new String(in.readAllBytes(), StandardCharsets.UTF_8));
            return m.find() ? Integer.parseInt(m.group(1)) : 0;
        }
    }

    /**
     * Whether {@code host} runs the snapshot's guest at the rate it had. Only KVM restores the rate; a process
     * guest reads the host's TSC as it is. Where this is false, a restore must fail with a tsc_khz mismatch.
     */
    public static boolean restoresOn(String release, Backend kind, HostTsc host) throws IOException {
        return kind != Backend.KVM || host.keepsRate(tscKhz(release, kind));
    }
}
