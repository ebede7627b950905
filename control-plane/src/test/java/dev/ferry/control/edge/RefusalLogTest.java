package dev.ferry.control.edge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class RefusalLogTest {
    @Test
    void oneLinePerKindPerIntervalWithTheCountOfTheRest() {
        AtomicLong now = new AtomicLong();
        List<String> lines = new ArrayList<>();
        RefusalLog log = new RefusalLog(Duration.ofSeconds(10), now::get, lines::add);
        Status bad = Status.INVALID_ARGUMENT.withDescription("name \"x\" is not a name\nsecond line");
        for (int i = 0; i < 100; i++) {
            log.refused("ferry.v1.VmService/GetVm", bad);
        }
        log.refused("ferry.v1.VmService/GetVm", Status.RESOURCE_EXHAUSTED.withDescription("too big"));
        assertEquals(2, lines.size(), lines.toString());
        assertEquals("refused ferry.v1.VmService/GetVm INVALID_ARGUMENT: name \"x\" is not a name second line",
                lines.get(0));
        now.addAndGet(Duration.ofSeconds(10).toNanos());
        log.refused("ferry.v1.VmService/GetVm", bad);
        assertEquals(3, lines.size());
        assertTrue(lines.get(2).endsWith("(and 99 more like it not logged)"), lines.get(2));
    }

    @Test
    void longDescriptionsAreCut() {
        List<String> lines = new ArrayList<>();
        new RefusalLog(Duration.ofSeconds(10), () -> 0, lines::add).refused("m",
                Status.INVALID_ARGUMENT.withDescription("y".repeat(100_000)));
        assertTrue(lines.get(0).length() < 300, lines.get(0));
    }
}
