package dev.ferry.control.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.rpc.ErrorInfo;
import dev.ferry.control.migration.MigrationLimiter.Limits;
import dev.ferry.control.migration.MigrationLimiter.Ticket;
import dev.ferry.control.migration.MigrationLimiter.WhenBusy;
import dev.ferry.v1.MigrationLimits;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;

/** The per-agent limits on concurrent migrations, as plain code: slots, the queue's order, refusals and their details. */
class MigrationLimiterTest {

    private static ErrorInfo info(StatusRuntimeException e) throws Exception {
        return StatusProto.fromThrowable(e).getDetails(0).unpack(ErrorInfo.class);
    }

    @Test
    void defaultsAreKubeVirtsTwoAndTwoQueueing() {
        assertEquals(new Limits(2, 2, WhenBusy.QUEUE), Limits.DEFAULT);
        assertThrows(IllegalArgumentException.class, () -> new Limits(0, 2, WhenBusy.QUEUE));
        assertThrows(IllegalArgumentException.class, () -> new Limits(2, Limits.MAX + 1, WhenBusy.QUEUE));
    }

    @Test
    void beyondTheLimitMigrationsQueueAndStartInArrivalOrder() {
        MigrationLimiter l = new MigrationLimiter(new Limits(2, 2, WhenBusy.QUEUE));
        Ticket a = l.outgoing("migrations/a");
        Ticket b = l.outgoing("migrations/b");
        Ticket c = l.outgoing("migrations/c");
        Ticket d = l.outgoing("migrations/d");
        assertTrue(a.granted() && b.granted());
        assertTrue(c.queued() && d.queued());
        assertEquals("2 of 2 outgoing migrations running (--max-outgoing-migrations 2); 0 queued ahead", c.waitingFor());
        assertTrue(d.waitingFor().endsWith("1 queued ahead"), d.waitingFor());
        assertEquals("", a.waitingFor());
        MigrationLimits p = l.toProto();
        assertEquals(2, p.getActiveOutgoingMigrations());
        assertEquals(2, p.getQueuedOutgoingMigrations());
        assertEquals(MigrationLimits.WhenBusy.QUEUE, p.getWhenBusy());

        b.release();
        assertTrue(c.granted(), "the first in line gets the freed slot");
        assertTrue(d.queued());
        b.release(); // idempotent: frees nothing more
        assertTrue(d.queued());
        a.release();
        assertTrue(d.granted());
        // A newcomer does not overtake: the queue is empty again, but both slots are taken.
        assertTrue(l.outgoing("migrations/e").queued());
    }

    @Test
    void aQueuedMigrationCanLeaveTheQueue() throws Exception {
        MigrationLimiter l = new MigrationLimiter(new Limits(1, 1, WhenBusy.QUEUE));
        Ticket a = l.outgoing("migrations/a");
        Ticket b = l.outgoing("migrations/b");
        Ticket c = l.outgoing("migrations/c");
        CompletableFuture<Boolean> bWaits = CompletableFuture.supplyAsync(() -> {
            try {
                return b.awaitGranted();
            } catch (InterruptedException e) {
                throw new IllegalStateException(e);
            }
        });
        b.release(); // cancelled while queued
        assertFalse(bWaits.get(30, TimeUnit.SECONDS), "the waiter learns it was withdrawn");
        assertEquals(1, l.toProto().getQueuedOutgoingMigrations());
        assertTrue(c.waitingFor().endsWith("0 queued ahead"), c.waitingFor());
        a.release();
        assertTrue(c.granted());
        assertTrue(c.awaitGranted());
    }

    @Test
    void refusePolicyAnswersResourceExhaustedNamingTheLimit() throws Exception {
        MigrationLimiter l = new MigrationLimiter(new Limits(2, 2, WhenBusy.REFUSE));
        l.outgoing("migrations/a");
        l.outgoing("migrations/b");
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> l.outgoing("migrations/c"));
        assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
        assertTrue(e.getStatus().getDescription().contains("--max-outgoing-migrations 2"), e.getStatus().getDescription());
        ErrorInfo i = info(e);
        assertEquals(MigrationLimiter.OUTGOING_LIMIT, i.getReason());
        assertEquals("2", i.getMetadataOrThrow("limit"));
        assertEquals("--max-outgoing-migrations", i.getMetadataOrThrow("flag"));
        assertFalse(MigrationLimiter.isIncomingLimit(e), "an outgoing refusal is not the destination's");
        assertEquals(0, l.toProto().getQueuedOutgoingMigrations());
    }

    @Test
    void incomingSlotsAreHeldUntilTheSessionEnds() throws Exception {
        MigrationLimiter l = new MigrationLimiter(new Limits(2, 2, WhenBusy.QUEUE));
        AtomicBoolean firstRunning = new AtomicBoolean(true);
        MigrationLimiter.IncomingSlot first = l.incoming("migrations/a");
        first.holdWhile(firstRunning::get);
        first.releaseUnlessHeld(); // the negotiation ended with a session: the slot stays
        MigrationLimiter.IncomingSlot negotiating = l.incoming("migrations/b"); // counts while it negotiates
        assertEquals(2, l.toProto().getActiveIncomingMigrations());

        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> l.incoming("migrations/c"));
        assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
        assertTrue(e.getStatus().getDescription().contains("--max-incoming-migrations 2"), e.getStatus().getDescription());
        assertEquals(MigrationLimiter.INCOMING_LIMIT, info(e).getReason());
        assertTrue(MigrationLimiter.isIncomingLimit(e));

        negotiating.releaseUnlessHeld(); // its negotiation failed
        MigrationLimiter.IncomingSlot third = l.incoming("migrations/c");
        assertThrows(StatusRuntimeException.class, () -> l.incoming("migrations/d"));
        firstRunning.set(false); // the first session reached a terminal phase
        l.incoming("migrations/d");
        assertEquals(2, l.toProto().getActiveIncomingMigrations());
        third.release();
        assertEquals(1, l.toProto().getActiveIncomingMigrations());
    }

    @Test
    void otherResourceExhaustedIsNotTheIncomingLimit() {
        assertFalse(MigrationLimiter.isIncomingLimit(Status.RESOURCE_EXHAUSTED.withDescription("asks 1 GiB")
                .asRuntimeException()));
        assertFalse(MigrationLimiter.isIncomingLimit(Status.UNAVAILABLE.asRuntimeException()));
    }
}
