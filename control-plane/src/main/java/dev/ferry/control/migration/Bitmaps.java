package dev.ferry.control.migration;

import com.google.protobuf.ByteString;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.GuestMemory;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.v1.PageBitmap;
import io.grpc.Status;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/** ferry.v1.PageBitmap (one per memory region, little-endian words) to and from {@link DirtyBitmap}. */
final class Bitmaps {
    private Bitmaps() {}

    static List<PageBitmap> toProto(GuestMemory memory, DirtyBitmap d) {
        List<PageBitmap> out = new ArrayList<>();
        for (int i = 0; i < memory.regions().size(); i++) {
            MemoryRegion r = memory.regions().get(i);
            long[] words = d.words(i);
            ByteBuffer b = ByteBuffer.allocate(words.length * 8).order(ByteOrder.LITTLE_ENDIAN);
            b.asLongBuffer().put(words);
            int bytes = (int) ((r.pages() + 7) / 8);
            out.add(PageBitmap.newBuilder().setSlot(r.slot()).setGuestPhysicalAddress(r.guestPhysAddr())
                    .setBitmap(ByteString.copyFrom(b.array(), 0, bytes)).build());
        }
        return out;
    }

    static DirtyBitmap fromProto(GuestMemory memory, List<PageBitmap> bitmaps) {
        if (bitmaps.size() != memory.regions().size()) {
            throw Status.INVALID_ARGUMENT.withDescription("page bitmaps cover " + bitmaps.size()
                    + " regions, the VM has " + memory.regions().size()).asRuntimeException();
        }
        long[][] words = new long[bitmaps.size()][];
        for (int i = 0; i < words.length; i++) {
            MemoryRegion r = memory.regions().get(i);
            PageBitmap p = bitmaps.get(i);
            if (p.getGuestPhysicalAddress() != r.guestPhysAddr() || p.getBitmap().size() != (r.pages() + 7) / 8) {
                throw Status.INVALID_ARGUMENT.withDescription("page bitmap " + i + " does not match region " + r.slot())
                        .asRuntimeException();
            }
            ByteBuffer b = ByteBuffer.allocate((int) ((r.pages() + 63) / 64 * 8)).order(ByteOrder.LITTLE_ENDIAN);
            p.getBitmap().copyTo(b);
            b.flip();
            words[i] = new long[b.capacity() / 8];
            b.clear();
            b.asLongBuffer().get(words[i]);
        }
        return DirtyBitmap.of(memory, words);
    }
}
