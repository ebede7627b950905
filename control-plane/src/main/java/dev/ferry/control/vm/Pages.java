package dev.ferry.control.vm;

import io.grpc.Status;
import java.nio.charset.StandardCharsets;
import java.util.Base64;

/** List pagination (AIP-158): opaque page tokens that encode an offset. */
public final class Pages {
    static final int DEFAULT_SIZE = 50;
    static final int MAX_SIZE = 1000;
    /** Tokens we issue are a dozen characters; anything much longer is not one of ours. */
    public static final int MAX_TOKEN = 64;

    private Pages() {}

    public static int size(int requested) {
        if (requested < 0) {
            throw Status.INVALID_ARGUMENT.withDescription("page_size must not be negative").asRuntimeException();
        }
        return requested == 0 ? DEFAULT_SIZE : Math.min(requested, MAX_SIZE);
    }

    public static int start(String token, int total) {
        if (token.isEmpty()) {
            return 0;
        }
        if (token.length() > MAX_TOKEN) {
            throw Status.INVALID_ARGUMENT.withDescription("invalid page_token").asRuntimeException();
        }
        try {
            String s = new String(Base64.getUrlDecoder().decode(token), StandardCharsets.UTF_8);
            if (!s.startsWith("o:")) {
                throw new IllegalArgumentException();
            }
            int off = Integer.parseInt(s.substring(2));
            if (off < 0 || off > total) {
                throw new IllegalArgumentException();
            }
            return off;
        } catch (IllegalArgumentException e) {
            throw Status.INVALID_ARGUMENT.withDescription("invalid page_token").asRuntimeException();
        }
    }

    public static String token(int offset) {
        return Base64.getUrlEncoder().withoutPadding().encodeToString(("o:" + offset).getBytes(StandardCharsets.UTF_8));
    }
}
