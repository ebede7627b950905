package dev.ferry.v1;

import com.google.protobuf.DescriptorProtos.DescriptorProto;
import com.google.protobuf.DescriptorProtos.EnumDescriptorProto;
import com.google.protobuf.DescriptorProtos.EnumValueDescriptorProto;
import com.google.protobuf.DescriptorProtos.FieldDescriptorProto;
import com.google.protobuf.DescriptorProtos.FileDescriptorProto;
import com.google.protobuf.DescriptorProtos.FileDescriptorSet;
import com.google.protobuf.DescriptorProtos.MethodDescriptorProto;
import com.google.protobuf.DescriptorProtos.ServiceDescriptorProto;
import com.google.protobuf.DescriptorProtos.SourceCodeInfo;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The mechanical rules of the ferry.v1 contract, checked on a descriptor set compiled with source info:
 * <ul>
 *   <li>every service, rpc, message, field, oneof, enum and enum value has a non-empty leading comment
 *       (the .proto files are the API documentation grpcurl users read);</li>
 *   <li>every enum's first value is its zero value and is named {@code *_UNSPECIFIED}.</li>
 * </ul>
 * Elements are found by walking {@link SourceCodeInfo} location paths, whose numbers are the field numbers of
 * descriptor.proto (e.g. {@code [4, 2, 2, 0]} is message 2, field 0 of a file).
 */
final class ContractRules {
    // Field numbers in google/protobuf/descriptor.proto.
    private static final int FILE_MESSAGE_TYPE = 4;
    private static final int FILE_ENUM_TYPE = 5;
    private static final int FILE_SERVICE = 6;
    private static final int MESSAGE_FIELD = 2;
    private static final int MESSAGE_NESTED_TYPE = 3;
    private static final int MESSAGE_ENUM_TYPE = 4;
    private static final int MESSAGE_ONEOF_DECL = 8;
    private static final int ENUM_VALUE = 2;
    private static final int SERVICE_METHOD = 2;

    private ContractRules() {
    }

    /** Every rule broken in {@code set}, one human-readable line each; empty when the contract is clean. */
    static List<String> violations(FileDescriptorSet set) {
        List<String> out = new ArrayList<>();
        for (FileDescriptorProto file : set.getFileList()) {
            new FileWalker(file, out).walk();
        }
        return out;
    }

    private static final class FileWalker {
        private final FileDescriptorProto file;
        private final List<String> out;
        private final Map<List<Integer>, String> leadingComments = new HashMap<>();

        FileWalker(FileDescriptorProto file, List<String> out) {
            this.file = file;
            this.out = out;
            for (SourceCodeInfo.Location location : file.getSourceCodeInfo().getLocationList()) {
                if (location.hasLeadingComments()) {
                    leadingComments.put(List.copyOf(location.getPathList()), location.getLeadingComments());
                }
            }
        }

        void walk() {
            if (!file.hasSourceCodeInfo()) {
                out.add(file.getName() + ": descriptor has no source info (compile with includeSourceInfo)");
                return;
            }
            String prefix = file.getPackage().isEmpty() ? "" : file.getPackage() + ".";
            for (int i = 0; i < file.getMessageTypeCount(); i++) {
                message(file.getMessageType(i), prefix, List.of(FILE_MESSAGE_TYPE, i));
            }
            for (int i = 0; i < file.getEnumTypeCount(); i++) {
                enumType(file.getEnumType(i), prefix, List.of(FILE_ENUM_TYPE, i));
            }
            for (int i = 0; i < file.getServiceCount(); i++) {
                service(file.getService(i), prefix, List.of(FILE_SERVICE, i));
            }
        }

        private void message(DescriptorProto message, String prefix, List<Integer> path) {
            String name = prefix + message.getName();
            requireComment("message", name, path);
            for (int i = 0; i < message.getFieldCount(); i++) {
                FieldDescriptorProto field = message.getField(i);
                requireComment("field", name + "." + field.getName(), append(path, MESSAGE_FIELD, i));
            }
            for (int i = 0; i < message.getOneofDeclCount(); i++) {
                if (!isSyntheticOneof(message, i)) {
                    requireComment("oneof", name + "." + message.getOneofDecl(i).getName(),
                            append(path, MESSAGE_ONEOF_DECL, i));
                }
            }
            for (int i = 0; i < message.getNestedTypeCount(); i++) {
                DescriptorProto nested = message.getNestedType(i);
                if (!nested.getOptions().getMapEntry()) {
                    message(nested, name + ".", append(path, MESSAGE_NESTED_TYPE, i));
                }
            }
            for (int i = 0; i < message.getEnumTypeCount(); i++) {
                enumType(message.getEnumType(i), name + ".", append(path, MESSAGE_ENUM_TYPE, i));
            }
        }

        private void enumType(EnumDescriptorProto enumType, String prefix, List<Integer> path) {
            String name = prefix + enumType.getName();
            requireComment("enum", name, path);
            if (enumType.getValueCount() == 0) {
                out.add("enum " + name + ": has no values");
            } else {
                EnumValueDescriptorProto first = enumType.getValue(0);
                if (first.getNumber() != 0 || !first.getName().endsWith("_UNSPECIFIED")) {
                    out.add("enum " + name + ": first value must be *_UNSPECIFIED = 0, found " + first.getName()
                            + " = " + first.getNumber());
                }
            }
            for (int i = 0; i < enumType.getValueCount(); i++) {
                requireComment("enum value", name + "." + enumType.getValue(i).getName(),
                        append(path, ENUM_VALUE, i));
            }
        }

        private void service(ServiceDescriptorProto service, String prefix, List<Integer> path) {
            String name = prefix + service.getName();
            requireComment("service", name, path);
            for (int i = 0; i < service.getMethodCount(); i++) {
                MethodDescriptorProto method = service.getMethod(i);
                requireComment("rpc", name + "." + method.getName(), append(path, SERVICE_METHOD, i));
            }
        }

        private void requireComment(String kind, String name, List<Integer> path) {
            String comment = leadingComments.get(path);
            if (comment == null || comment.isBlank()) {
                out.add(kind + " " + name + " (" + file.getName() + "): missing leading comment");
            }
        }

        /** The oneof that protoc makes for a proto3 {@code optional} field; it has no source of its own. */
        private static boolean isSyntheticOneof(DescriptorProto message, int oneofIndex) {
            boolean any = false;
            for (FieldDescriptorProto field : message.getFieldList()) {
                if (field.hasOneofIndex() && field.getOneofIndex() == oneofIndex) {
                    if (!field.getProto3Optional()) {
                        return false;
                    }
                    any = true;
                }
            }
            return any;
        }

        private static List<Integer> append(List<Integer> path, int tag, int index) {
            List<Integer> result = new ArrayList<>(path.size() + 2);
            result.addAll(path);
            result.add(tag);
            result.add(index);
            return List.copyOf(result);
        }
    }
}
