package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A marker lives while its migration runs; one left by a dead process is reported once and removed. */
class IncomingMarkersTest {
    @TempDir
    Path dir;

    @Test
    void aMarkerLeftByADeadRunIsReportedOnceAndRemoved() throws Exception {
        IncomingMarkers first = new IncomingMarkers(dir);
        first.created("migrations/m1", "10.0.0.1:7001", "vms/web");
        first.created("migrations/m2", "10.0.0.1:7001", "vms/db");
        first.ended("migrations/m2"); // ended normally: nothing to report
        // The process dies here; the next start of the agent finds m1 only.
        List<String> found = new IncomingMarkers(dir).reportLeftovers();
        assertEquals(1, found.size(), found.toString());
        assertTrue(found.get(0).startsWith("incoming migrations/m1 of vms/web from 10.0.0.1:7001"), found.get(0));
        try (var left = Files.list(dir)) {
            assertEquals(List.of(), left.toList(), "reported markers are removed");
        }
        assertEquals(List.of(), new IncomingMarkers(dir).reportLeftovers(), "and reported once");
    }

    @Test
    void offWritesNothing() throws Exception {
        IncomingMarkers off = IncomingMarkers.off();
        off.created("migrations/m1", "10.0.0.1:7001", "vms/web");
        assertEquals(List.of(), off.reportLeftovers());
        try (var left = Files.list(dir)) {
            assertEquals(0, left.count());
        }
    }
}
