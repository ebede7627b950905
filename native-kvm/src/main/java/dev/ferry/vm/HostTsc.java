package dev.ferry.vm;

/**
 * This host's TSC as a new guest sees it.
 *
 * @param khz      its rate in kHz (0: unknown)
 * @param scalable whether a guest's TSC can be made to tick at another rate here (KVM_CAP_TSC_CONTROL)
 */
public record HostTsc(int khz, boolean scalable) {
    /** KVM's own tolerance (tsc_tolerance_ppm) for calling two TSC rates the same. */
    public static final int TOLERANCE_PPM = 250;

    /**
     * Whether a guest whose TSC ticked at {@code guestKhz} (0: unknown) keeps that rate here: the same rate, a rate
     * this host can scale to, or a rate one side does not know.
     */
    public boolean keepsRate(int guestKhz) {
        return guestKhz == 0 || khz == 0 || scalable || sameRate(guestKhz, khz);
    }

    /** Whether a guest moving between TSC rates {@code a} and {@code b} kHz needs no scaling. */
    public static boolean sameRate(int a, int b) {
        return Math.abs((long) a - b) * 1_000_000L <= (long) TOLERANCE_PPM * Math.max(a, b);
    }
}
