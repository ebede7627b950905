package dev.ferry.control.api;

import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Descriptors.Descriptor;
import com.google.protobuf.Descriptors.FieldDescriptor;
import com.google.protobuf.Descriptors.FileDescriptor;
import com.google.protobuf.Descriptors.MethodDescriptor;
import com.google.protobuf.Descriptors.ServiceDescriptor;
import dev.ferry.v1.MigrationServiceProto;
import dev.ferry.v1.PageTransferServiceProto;
import dev.ferry.v1.PostcopyPagerServiceProto;
import dev.ferry.v1.VmServiceProto;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * Every field of ferry.v1 does something: a field a caller sends is read by the agents' code, and a field the
 * agents answer with is written by it. The check is textual (the generated accessor's name in the main sources
 * of the modules that serve or call the API), so it cannot prove a field is honoured, only that nothing
 * ignores it outright; a field that must stay unread is listed in {@link #UNREAD} with the reason.
 */
class ProtoFieldCoverageTest {
    private static final List<FileDescriptor> API = List.of(VmServiceProto.getDescriptor(),
            MigrationServiceProto.getDescriptor(), PageTransferServiceProto.getDescriptor(),
            PostcopyPagerServiceProto.getDescriptor());
    private static final List<Path> MAIN_SOURCES = List.of(Path.of("../control-plane/src/main/java"),
            Path.of("../data-plane/src/main/java"), Path.of("../k8s/src/main/java"));
    private static final Path PROTOS = Path.of("../proto/src/main/proto/ferry/v1");

    /** Fields read or written by field number in a hand-written codec, not through generated accessors. */
    private static final Map<String, String> WIRE_CODECS = Map.of(
            "ferry.v1.PageBatch", "PageWire/IncomingBatch/OutgoingBatch encode and decode it by field number",
            "ferry.v1.PageRange", "PageWire/IncomingBatch/OutgoingBatch encode and decode it by field number",
            "ferry.v1.PageFaultRequest", "PagerWire encodes and decodes it by field number",
            "ferry.v1.PageFaultReply", "PagerWire encodes and decodes it by field number");

    /** message.field -> why nothing reads (or writes) it. */
    private static final Map<String, String> UNREAD = Map.of(
            "ferry.v1.MigrationConfig.hugepage_sizes_bytes", "accepted: always empty, since hugepage backing is refused"
                    + " (a proposal that names one is a mismatch; Vm.backing_page_size_bytes other than 4 KiB is"
                    + " INVALID_ARGUMENT)");

    private static String sources() throws IOException {
        StringBuilder all = new StringBuilder();
        for (Path root : MAIN_SOURCES) {
            try (Stream<Path> files = Files.walk(root)) {
                for (Path p : files.filter(f -> f.toString().endsWith(".java")).toList()) {
                    all.append(Files.readString(p)).append('\n');
                }
            }
        }
        return all.toString();
    }

    /** message full name + "." + field name of every field whose comment says "Output only". */
    private static Set<String> outputOnlyFields() throws IOException {
        Set<String> out = new HashSet<>();
        Pattern message = Pattern.compile("^\\s*message (\\w+) \\{");
        Pattern field = Pattern.compile("^\\s*(?:repeated |optional )?(?:map<[^>]+>|[\\w.]+) (\\w+) = \\d+");
        try (Stream<Path> files = Files.list(PROTOS)) {
            for (Path p : files.filter(f -> f.toString().endsWith(".proto")).toList()) {
                Deque<String> stack = new ArrayDeque<>();
                Deque<Integer> depthAt = new ArrayDeque<>();
                int depth = 0;
                StringBuilder comment = new StringBuilder();
                for (String line : Files.readAllLines(p)) {
                    String t = line.trim();
                    Matcher m = message.matcher(line);
                    Matcher f = field.matcher(line);
                    if (t.startsWith("//")) {
                        comment.append(t).append(' ');
                        continue;
                    }
                    if (m.find()) {
                        stack.push(m.group(1));
                        depthAt.push(depth);
                    } else if (f.find() && !stack.isEmpty() && comment.toString().contains("Output only")) {
                        List<String> names = new ArrayList<>(stack);
                        java.util.Collections.reverse(names);
                        out.add("ferry.v1." + String.join(".", names) + "." + f.group(1));
                    }
                    comment.setLength(0);
                    for (char c : line.toCharArray()) {
                        if (c == '{') {
                            depth++;
                        } else if (c == '}') {
                            depth--;
                            if (!depthAt.isEmpty() && depth == depthAt.peek()) {
                                depthAt.pop();
                                stack.pop();
                            }
                        }
                    }
                }
            }
        }
        return out;
    }

    private static void reach(Descriptor d, Set<Descriptor> into) {
        if (!d.getFile().getPackage().equals("ferry.v1") || !into.add(d)) {
            return;
        }
        for (FieldDescriptor f : d.getFields()) {
            // A map's entries are its field's (putAllX / getXMap), not messages of their own.
            if (f.getType() == FieldDescriptor.Type.MESSAGE && !f.isMapField()) {
                reach(f.getMessageType(), into);
            }
        }
    }

    private static String cap(FieldDescriptor f) {
        String j = f.getJsonName();
        return Character.toUpperCase(j.charAt(0)) + j.substring(1);
    }

    private static boolean read(String src, FieldDescriptor f) {
        String c = cap(f);
        return Pattern.compile("\\b(get|has)" + c + "(List|Count|Value|Map|OrDefault|OrThrow|ValueList)?\\(")
                .matcher(src).find();
    }

    private static boolean written(String src, FieldDescriptor f) {
        String c = cap(f);
        return Pattern.compile("\\b(set|add|addAll|put|putAll|merge)" + c + "(Value)?\\(|\\bget" + c + "Builder\\(")
                .matcher(src).find();
    }

    @Test
    void everyFieldIsReadWhereItArrivesAndWrittenWhereItLeaves() throws IOException {
        String src = sources();
        Set<String> outputOnly = outputOnlyFields();
        Set<Descriptor> inputs = new LinkedHashSet<>();
        Set<Descriptor> outputs = new LinkedHashSet<>();
        for (FileDescriptor file : API) {
            for (ServiceDescriptor s : file.getServices()) {
                for (MethodDescriptor m : s.getMethods()) {
                    reach(m.getInputType(), inputs);
                    reach(m.getOutputType(), outputs);
                }
            }
        }
        List<String> problems = new ArrayList<>();
        for (Descriptor d : inputs) {
            if (WIRE_CODECS.containsKey(d.getFullName())) {
                continue;
            }
            for (FieldDescriptor f : d.getFields()) {
                String key = d.getFullName() + "." + f.getName();
                if (!outputOnly.contains(key) && !UNREAD.containsKey(key) && !read(src, f)) {
                    problems.add(key + " arrives in a request and nothing reads it");
                }
            }
        }
        for (Descriptor d : outputs) {
            if (WIRE_CODECS.containsKey(d.getFullName())) {
                continue;
            }
            for (FieldDescriptor f : d.getFields()) {
                String key = d.getFullName() + "." + f.getName();
                if (!UNREAD.containsKey(key) && !written(src, f)) {
                    problems.add(key + " leaves in a response and nothing writes it");
                }
            }
        }
        assertTrue(problems.isEmpty(), String.join("\n", problems));
    }

    @Test
    void theCommentParserFindsOutputOnlyFields() throws IOException {
        // Guards the parser above: if it found nothing, every output-only field would be demanded as input.
        Set<String> o = outputOnlyFields();
        assertTrue(o.size() > 20, o.toString());
        assertTrue(o.contains("ferry.v1.Vm.state"), o.toString());
    }
}
