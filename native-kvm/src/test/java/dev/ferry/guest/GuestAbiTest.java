package dev.ferry.guest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Java side of the guest ABI must equal abi.h, and Java's idea of a page's content must equal
 * the guest's: both are checked against the C sources with gcc, not against numbers typed here.
 */
class GuestAbiTest {
    static final Path GUEST_SRC = Path.of("src/main/guest");

    @Test
    void everyJavaConstantMatchesAbiHeader(@TempDir Path tmp) throws Exception {
        Map<String, Long> java = new HashMap<>();
        for (Field f : GuestAbi.class.getFields()) {
            if (Modifier.isStatic(f.getModifiers()) && (f.getType() == long.class || f.getType() == int.class)
                    && !f.getName().startsWith("SEL_") && !f.getName().equals("PAGE_SIZE")
                    && !f.getName().equals("HUGE_PAGE_SIZE")) {
                java.put(f.getName(), ((Number) f.get(null)).longValue());
            }
        }
        StringBuilder c = new StringBuilder("#include <stdio.h>\n#include \"abi.h\"\nint main(void){\n");
        for (String name : java.keySet()) {
            String macro = name.startsWith("P_") || name.startsWith("S_") || name.startsWith("V_") ? name : "ABI_" + name;
            c.append("printf(\"%s %lu\\n\", \"").append(name).append("\", (unsigned long)(").append(macro).append("));\n");
        }
        c.append("return 0;}\n");
        Map<String, Long> fromC = new HashMap<>();
        for (String line : compileAndRun(tmp, c.toString())) {
            String[] kv = line.split(" ");
            fromC.put(kv[0], Long.parseUnsignedLong(kv[1]));
        }
        assertTrue(java.size() > 80, "checked " + java.size() + " constants");
        for (var e : java.entrySet()) {
            assertEquals(fromC.get(e.getKey()), e.getValue(), "GuestAbi." + e.getKey() + " vs abi.h");
        }
    }

    @Test
    void everyAbiHeaderConstantHasAJavaTwin() throws Exception {
        java.util.Set<String> fields = new java.util.HashSet<>();
        for (Field f : GuestAbi.class.getFields()) {
            fields.add(f.getName());
        }
        var m = java.util.regex.Pattern.compile("(?m)^#define\\s+(ABI_|P_|S_|V_)(\\w+)").matcher(
                Files.readString(GUEST_SRC.resolve("abi.h")));
        int n = 0;
        while (m.find()) {
            String name = m.group(1).equals("ABI_") ? m.group(2) : m.group(1) + m.group(2);
            assertTrue(fields.contains(name), "abi.h defines " + m.group(1) + m.group(2) + " but GuestAbi has no " + name);
            n++;
        }
        assertTrue(n > 80, "found " + n + " constants in abi.h");
    }

    @Test
    void stateBlockFitsItsStrideAndTheLowAreaIsFree() {
        assertTrue(GuestAbi.V_END <= GuestAbi.VCPU_STATE_STRIDE, "state block fits its stride");
        assertEquals(GuestAbi.V_CON_BUF + GuestAbi.CON_MAX, GuestAbi.V_END);
        long stateEnd = GuestAbi.VCPU_STATE_GPA + GuestAbi.MAX_VCPUS * GuestAbi.VCPU_STATE_STRIDE;
        long stacksBottom = GuestAbi.USER_STACK_TOP - GuestAbi.MAX_VCPUS * GuestAbi.USER_STACK_SIZE;
        long pdEnd = GuestAbi.PD_GPA + GuestAbi.PD_MAX_PAGES * GuestAbi.PAGE_SIZE;
        assertTrue(GuestAbi.VCPU_STATE_GPA >= pdEnd && stateEnd <= stacksBottom,
                "state blocks sit between the page directories and the user stacks");
        assertTrue(GuestAbi.PARAMS_GPA + GuestAbi.P_END <= GuestAbi.STATUS_GPA, "parameter block fits its page");
    }

    @Test
    void workloadLibraryReturnCodesMatchTheCoreHeader(@TempDir Path tmp) throws Exception {
        Map<String, Long> java = new HashMap<>();
        for (Field f : WorkloadLibrary.class.getFields()) {
            if (Modifier.isStatic(f.getModifiers()) && f.getType() == int.class && f.getName().startsWith("STEP_")) {
                java.put(f.getName(), ((Number) f.get(null)).longValue());
            }
        }
        StringBuilder c = new StringBuilder("#include <stdio.h>\n#include \"workload_core.h\"\nint main(void){\n");
        for (String name : java.keySet()) {
            c.append("printf(\"%s %ld\\n\", \"").append(name).append("\", (long)(WL_").append(name).append("));\n");
        }
        c.append("return 0;}\n");
        List<String> lines = compileAndRun(tmp, c.toString());
        assertEquals(3, java.size());
        assertEquals(java.size(), lines.size());
        for (String line : lines) {
            String[] kv = line.split(" ");
            assertEquals(Long.parseLong(kv[1]), java.get(kv[0]), "WorkloadLibrary." + kv[0] + " vs workload_core.h");
        }
    }

    @Test
    void javaPageContentMatchesTheGuestsOwnFunction(@TempDir Path tmp) throws Exception {
        // Pull page_base/page_word/mix64 out of workload_core.c and evaluate them natively.
        String src = Files.readString(GUEST_SRC.resolve("workload_core.c"));
        String funcs = extract(src, "static inline u64 mix64") + extract(src, "static inline u64 page_word")
                + extract(src, "static inline u64 page_base");
        String c = "#include <stdio.h>\ntypedef unsigned long u64;\ntypedef unsigned int u32;\n" + funcs
                + "int main(void){ u64 pages[]={0,1,77,65535,1234567}; u32 gens[]={1,2,3,4000000000u};\n"
                + "for(int a=0;a<5;a++)for(int b=0;b<4;b++)for(int i=0;i<512;i+=73)"
                + " printf(\"%lu %u %d %lu\\n\",pages[a],gens[b],i,page_word(page_base(pages[a],gens[b]),i));return 0;}\n";
        List<String> lines = compileAndRun(tmp, c);
        assertEquals(5 * 4 * 8, lines.size());
        for (String line : lines) {
            String[] f = line.split(" ");
            long page = Long.parseUnsignedLong(f[0]);
            int gen = Integer.parseUnsignedInt(f[1]);
            int i = Integer.parseInt(f[2]);
            assertEquals(Long.parseUnsignedLong(f[3]), GuestAbi.pageWord(page, gen, i), line);
        }
        assertEquals(0, GuestAbi.pageWord(3, 0, 5), "generation 0 is an all-zero page");
    }

    private static String extract(String src, String signature) {
        int start = src.indexOf(signature);
        assertTrue(start >= 0, "workload_core.c has " + signature);
        int depth = 0;
        for (int i = src.indexOf('{', start); i < src.length(); i++) {
            if (src.charAt(i) == '{') {
                depth++;
            } else if (src.charAt(i) == '}' && --depth == 0) {
                return src.substring(start, i + 1) + "\n";
            }
        }
        throw new AssertionError("unbalanced braces after " + signature);
    }

    private static List<String> compileAndRun(Path tmp, String program) throws IOException, InterruptedException {
        Path c = tmp.resolve("probe.c");
        Path exe = tmp.resolve("probe");
        Files.writeString(c, program);
        run(List.of("gcc", "-O1", "-I", GUEST_SRC.toAbsolutePath().toString(), "-o", exe.toString(), c.toString()));
        return run(List.of(exe.toString()));
    }

    private static List<String> run(List<String> cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "timed out: " + cmd);
        assertEquals(0, p.exitValue(), cmd + " failed:\n" + out);
        return out.lines().toList();
    }
}
