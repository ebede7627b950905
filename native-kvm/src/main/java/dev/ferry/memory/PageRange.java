package dev.ferry.memory;

/** {@code pages} consecutive 4 KiB guest pages starting at {@code gpa}. */
public record PageRange(long gpa, long pages) {
    public PageRange {
        if (gpa % GuestMemory.PAGE_SIZE != 0 || pages <= 0) {
            throw new IllegalArgumentException("bad page range " + gpa + "+" + pages);
        }
    }

    public long bytes() {
        return pages * GuestMemory.PAGE_SIZE;
    }

    public long endGpa() {
        return gpa + bytes();
    }
}
