package dev.ferry.control.edge;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.regex.Pattern;

/**
 * Resource names and IDs as common.proto defines them: "vms/{id}" and "migrations/{id}", where an ID is 1 to 63
 * characters of [a-z0-9-] starting with a letter (an RFC 1035 label). Anything else is INVALID_ARGUMENT, with at
 * most {@link BoundedText#MAX_QUOTED} characters of the input quoted.
 */
public final class Names {
    public static final String VMS = "vms/";
    public static final String MIGRATIONS = "migrations/";
    private static final Pattern ID = Pattern.compile("[a-z]([a-z0-9-]{0,61}[a-z0-9])?");

    private Names() {}

    /** True when {@code id} is a valid ID. */
    public static boolean isId(String id) {
        return id != null && id.length() <= 63 && ID.matcher(id).matches();
    }

    /** {@code id} if valid, else INVALID_ARGUMENT naming {@code field}. */
    public static String id(String field, String id) {
        if (!isId(id)) {
            throw invalid(field + " " + BoundedText.quote(id)
                    + " must be 1 to 63 characters of [a-z0-9-], starting with a letter and not ending with '-'");
        }
        return id;
    }

    /** The ID of a required "vms/{id}" name. */
    public static String vm(String field, String name) {
        return named(field, name, VMS);
    }

    /** The ID of a required "migrations/{id}" name. */
    public static String migration(String field, String name) {
        return named(field, name, MIGRATIONS);
    }

    private static String named(String field, String name, String prefix) {
        if (name.isEmpty()) {
            throw invalid(field + " is required: \"" + prefix + "{id}\"");
        }
        if (!name.startsWith(prefix) || !isId(name.substring(prefix.length()))) {
            throw invalid(field + " " + BoundedText.quote(name) + " is not a name of the form \"" + prefix
                    + "{id}\" (id: 1 to 63 characters of [a-z0-9-], starting with a letter)");
        }
        return name.substring(prefix.length());
    }

    static StatusRuntimeException invalid(String message) {
        return Status.INVALID_ARGUMENT.withDescription(message).asRuntimeException();
    }
}
