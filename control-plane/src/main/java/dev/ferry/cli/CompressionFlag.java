package dev.ferry.cli;

import dev.ferry.v1.MigrationPolicy.PageCompression;
import java.util.Locale;
import picocli.CommandLine.ITypeConverter;

/** {@code --compression auto|none|lz4}: MigrationPolicy.page_compression. */
final class CompressionFlag implements ITypeConverter<PageCompression> {
    static final String DESCRIPTION = "Page compression: auto (LZ4 while the link, not the CPU, limits a stream and"
            + " it pays), none, or lz4 (always) (default ${DEFAULT-VALUE}).";

    @Override
    public PageCompression convert(String value) {
        return switch (value.toLowerCase(Locale.ROOT)) {
            case "auto" -> PageCompression.AUTO;
            case "none" -> PageCompression.NONE;
            case "lz4" -> PageCompression.LZ4;
            default -> throw new IllegalArgumentException("--compression must be auto, none or lz4, not " + value);
        };
    }
}
