package dev.ferry.v1;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.DescriptorProtos.DescriptorProto;
import com.google.protobuf.DescriptorProtos.EnumDescriptorProto;
import com.google.protobuf.DescriptorProtos.FieldDescriptorProto;
import com.google.protobuf.DescriptorProtos.FileDescriptorProto;
import com.google.protobuf.DescriptorProtos.FileDescriptorSet;
import com.google.protobuf.DescriptorProtos.SourceCodeInfo;
import com.google.protobuf.Descriptors.Descriptor;
import com.google.protobuf.Descriptors.FieldDescriptor;
import java.io.IOException;
import java.io.InputStream;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Checks the ferry.v1 .proto files against the contract rules, using the descriptor set that protoc writes with
 * source info (comments) and that the build copies to {@value #PROTOSET} on the classpath.
 */
class ProtoContractTest {
    static final String PROTOSET = "/META-INF/ferry/ferry-v1.protoset";

    private static final Set<String> FILES = Set.of(
            "ferry/v1/common.proto",
            "ferry/v1/vm_service.proto",
            "ferry/v1/migration_service.proto",
            "ferry/v1/page_transfer_service.proto",
            "ferry/v1/postcopy_pager_service.proto");

    private static FileDescriptorSet protoset;

    @BeforeAll
    static void loadProtoset() throws IOException {
        try (InputStream in = ProtoContractTest.class.getResourceAsStream(PROTOSET)) {
            assertNotNull(in, PROTOSET + " is not on the classpath; is writeDescriptorSet configured?");
            protoset = FileDescriptorSet.parseFrom(in);
        }
    }

    @Test
    void protosetHoldsExactlyTheFerryFiles() {
        Set<String> names = protoset.getFileList().stream().map(FileDescriptorProto::getName)
                .collect(Collectors.toCollection(TreeSet::new));
        assertEquals(new TreeSet<>(FILES), names);
    }

    @Test
    void everyFileUsesThePackageAndJavaOptions() {
        for (FileDescriptorProto file : protoset.getFileList()) {
            assertEquals("ferry.v1", file.getPackage(), file.getName());
            assertEquals("dev.ferry.v1", file.getOptions().getJavaPackage(), file.getName());
            assertTrue(file.getOptions().getJavaMultipleFiles(), file.getName() + ": java_multiple_files");
            assertEquals("proto3", file.getSyntax(), file.getName());
        }
    }

    @Test
    void contractRulesHold() {
        List<String> violations = ContractRules.violations(protoset);
        assertTrue(violations.isEmpty(), () -> violations.size() + " contract violation(s):\n  "
                + String.join("\n  ", violations));
    }

    @Test
    void theRulesCatchAMissingComment() {
        // Strip the comment of PageBatch.data and check that the rules notice: proof the check above can fail.
        FileDescriptorSet.Builder broken = protoset.toBuilder();
        FileDescriptorProto.Builder file = fileBuilder(broken, "ferry/v1/page_transfer_service.proto");
        int message = indexOfMessage(file.build(), "PageBatch");
        int field = indexOfField(file.build(), message, "data");
        SourceCodeInfo.Builder info = file.getSourceCodeInfoBuilder();
        boolean stripped = false;
        for (SourceCodeInfo.Location.Builder location : info.getLocationBuilderList()) {
            if (location.getPathList().equals(List.of(4, message, 2, field))) {
                location.clearLeadingComments();
                stripped = true;
            }
        }
        assertTrue(stripped, "PageBatch.data has no source location");
        assertEquals(List.of("field ferry.v1.PageBatch.data (ferry/v1/page_transfer_service.proto): "
                + "missing leading comment"), ContractRules.violations(broken.build()));
    }

    @Test
    void theRulesCatchAnEnumWithoutUnspecifiedZero() {
        FileDescriptorSet.Builder broken = protoset.toBuilder();
        FileDescriptorProto.Builder file = fileBuilder(broken, "ferry/v1/migration_service.proto");
        EnumDescriptorProto.Builder mode = file.getEnumTypeBuilderList().stream()
                .filter(e -> e.getName().equals("MigrationMode")).findFirst().orElseThrow();
        mode.getValueBuilder(0).setName("MIGRATION_MODE_NONE");
        List<String> violations = ContractRules.violations(broken.build());
        assertEquals(1, violations.size(), violations::toString);
        assertTrue(violations.get(0).startsWith("enum ferry.v1.MigrationMode: first value must be *_UNSPECIFIED"),
                violations.get(0));
    }

    @Test
    void theRulesRefuseADescriptorWithoutSourceInfo() {
        FileDescriptorSet.Builder stripped = protoset.toBuilder();
        stripped.getFileBuilderList().forEach(FileDescriptorProto.Builder::clearSourceCodeInfo);
        assertEquals(FILES.size(), ContractRules.violations(stripped.build()).size());
    }

    @Test
    void bulkPageBytesAreSerializedLast() {
        // Zero-copy marshalling relies on `data` being the highest-numbered field of these messages.
        for (Descriptor message : List.of(PageBatch.getDescriptor(), PageFaultReply.getDescriptor())) {
            FieldDescriptor data = message.findFieldByName("data");
            assertEquals(FieldDescriptor.Type.BYTES, data.getType(), message.getFullName());
            int highest = message.getFields().stream().mapToInt(FieldDescriptor::getNumber).max().orElseThrow();
            assertEquals(highest, data.getNumber(), message.getFullName() + ".data must have the highest number");
        }
    }

    @Test
    void generatedCodeMatchesTheProtoset() {
        // The classpath descriptor set and the generated classes come from the same protoc run.
        FileDescriptorProto generated = Migration.getDescriptor().getFile().toProto();
        FileDescriptorProto fromSet = protoset.getFileList().stream()
                .filter(f -> f.getName().equals(generated.getName())).findFirst().orElseThrow();
        FileDescriptorProto.Builder comparable = fromSet.toBuilder().clearSourceCodeInfo();
        comparable.getMessageTypeBuilderList().forEach(ProtoContractTest::clearJsonNames);
        assertEquals(generated, comparable.build());
        assertFalse(FerryMetadata.SESSION_TOKEN.name().isEmpty());
        assertEquals("ferry-session-token", FerryMetadata.SESSION_TOKEN.name());
    }

    /** protoc writes json_name into descriptor sets but not into the descriptors embedded in generated code. */
    private static void clearJsonNames(DescriptorProto.Builder message) {
        message.getFieldBuilderList().forEach(FieldDescriptorProto.Builder::clearJsonName);
        message.getNestedTypeBuilderList().forEach(ProtoContractTest::clearJsonNames);
    }

    private static FileDescriptorProto.Builder fileBuilder(FileDescriptorSet.Builder set, String name) {
        return set.getFileBuilderList().stream().filter(f -> f.getName().equals(name)).findFirst().orElseThrow();
    }

    private static int indexOfMessage(FileDescriptorProto file, String name) {
        for (int i = 0; i < file.getMessageTypeCount(); i++) {
            if (file.getMessageType(i).getName().equals(name)) {
                return i;
            }
        }
        throw new AssertionError("no message " + name + " in " + file.getName());
    }

    private static int indexOfField(FileDescriptorProto file, int message, String name) {
        for (int i = 0; i < file.getMessageType(message).getFieldCount(); i++) {
            if (file.getMessageType(message).getField(i).getName().equals(name)) {
                return i;
            }
        }
        throw new AssertionError("no field " + name);
    }
}
