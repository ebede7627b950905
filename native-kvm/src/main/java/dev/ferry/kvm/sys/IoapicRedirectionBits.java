package dev.ferry.kvm.sys;

/**
 * The {@code fields} view of one {@code kvm_ioapic_state.redirtbl} entry (asm/kvm.h), as bit positions in its
 * {@code __u64 bits}. StructLayoutTest has gcc set each C bit-field and checks the bits land where these say.
 */
public enum IoapicRedirectionBits {
    VECTOR("vector", 0, 8),
    DELIVERY_MODE("delivery_mode", 8, 3),
    DEST_MODE("dest_mode", 11, 1),
    DELIVERY_STATUS("delivery_status", 12, 1),
    POLARITY("polarity", 13, 1),
    REMOTE_IRR("remote_irr", 14, 1),
    TRIG_MODE("trig_mode", 15, 1),
    MASK("mask", 16, 1),
    DEST_ID("dest_id", 56, 8);

    /** The bits no named field covers ({@code reserve:7} and {@code reserved[4]}). */
    public static final long RESERVED_MASK;

    static {
        long named = 0;
        for (IoapicRedirectionBits f : values()) {
            named |= f.mask();
        }
        RESERVED_MASK = ~named;
    }

    private final String cName;
    private final int shift;
    private final int width;

    IoapicRedirectionBits(String cName, int shift, int width) {
        this.cName = cName;
        this.shift = shift;
        this.width = width;
    }

    /** The C member name in {@code fields}. */
    public String cName() {
        return cName;
    }

    /** The field's bits in place. */
    public long mask() {
        return ((1L << width) - 1) << shift;
    }

    /** Largest value the field holds. */
    public int max() {
        return (1 << width) - 1;
    }

    /** The field's value in an entry. */
    public int get(long bits) {
        return (int) ((bits & mask()) >>> shift);
    }

    /** The entry with the field set to {@code value}, which must fit (see {@link #max()}). */
    public long set(long bits, int value) {
        if (value < 0 || value > max()) {
            throw new IllegalArgumentException(cName + " " + value + " does not fit in " + width + " bits");
        }
        return (bits & ~mask()) | ((long) value << shift);
    }
}
