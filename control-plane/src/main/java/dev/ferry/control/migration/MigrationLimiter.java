package dev.ferry.control.migration;

import com.google.protobuf.Any;
import com.google.rpc.ErrorInfo;
import dev.ferry.v1.MigrationLimits;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Objects;
import java.util.function.BooleanSupplier;

/**
 * How many migrations one agent runs at once, as KubeVirt bounds them per node (2 outgoing, 2 incoming by default):
 * outgoing migrations beyond the limit wait in arrival order or are refused ({@link WhenBusy}); incoming ones beyond
 * it are always refused, with RESOURCE_EXHAUSTED naming the limit, before anything is allocated (the source queues
 * and asks again if it is configured to). Plain code: no threads of its own, no I/O; callers block only in
 * {@link Ticket#awaitGranted()}.
 *
 * <p>One monitor (this) guards every count and the queue. Lock order: a migration's own lock, then this one, never
 * the reverse; the only calls out while holding it are the incoming slots' {@code active} predicates, which take a
 * destination session's lock and never call back here.
 */
public final class MigrationLimiter {
    /** {@code ErrorInfo.reason} of a CreateMigration refused at the source's outgoing limit. */
    public static final String OUTGOING_LIMIT = "OUTGOING_MIGRATION_LIMIT";
    /** {@code ErrorInfo.reason} of a NegotiateMigration refused at the destination's incoming limit. */
    public static final String INCOMING_LIMIT = "INCOMING_MIGRATION_LIMIT";

    /** What an agent does with an outgoing migration beyond its limit. */
    public enum WhenBusy {
        /** Keep it in phase QUEUED and start it when a slot frees, in arrival order. */
        QUEUE,
        /** Refuse CreateMigration with RESOURCE_EXHAUSTED. */
        REFUSE
    }

    /** An agent's limits: {@code ferry agent --max-outgoing-migrations, --max-incoming-migrations, --when-busy}. */
    public record Limits(int maxOutgoing, int maxIncoming, WhenBusy whenBusy) {
        /** KubeVirt's parallelOutboundMigrationsPerNode; incoming mirrors it so a pair of agents is symmetric. */
        public static final int DEFAULT_MAX_OUTGOING = 2;
        public static final int DEFAULT_MAX_INCOMING = 2;
        /** Far beyond what a host's network and cores carry usefully; bounds the bookkeeping. */
        public static final int MAX = 256;
        public static final Limits DEFAULT = new Limits(DEFAULT_MAX_OUTGOING, DEFAULT_MAX_INCOMING, WhenBusy.QUEUE);

        public Limits {
            Objects.requireNonNull(whenBusy, "whenBusy");
            if (maxOutgoing < 1 || maxOutgoing > MAX || maxIncoming < 1 || maxIncoming > MAX) {
                throw new IllegalArgumentException("migration limits must be 1 to " + MAX + ", got " + maxOutgoing
                        + " outgoing and " + maxIncoming + " incoming");
            }
        }
    }

    private final Limits limits;
    private int outgoing; // guarded by this: tickets granted and not yet released
    private final ArrayDeque<Ticket> queue = new ArrayDeque<>(); // guarded by this: FIFO, arrival order
    private final List<IncomingSlot> incoming = new ArrayList<>(); // guarded by this

    public MigrationLimiter(Limits limits) {
        this.limits = Objects.requireNonNull(limits, "limits");
    }

    public Limits limits() {
        return limits;
    }

    private enum TicketState { QUEUED, GRANTED, RELEASED }

    /** One outgoing migration's claim on a slot: granted at once, or queued until one frees. */
    public final class Ticket {
        private final String name;
        private TicketState state; // guarded by MigrationLimiter.this

        private Ticket(String name, TicketState state) {
            this.name = name;
            this.state = state;
        }

        public String name() {
            return name;
        }

        public boolean granted() {
            synchronized (MigrationLimiter.this) {
                return state == TicketState.GRANTED;
            }
        }

        public boolean queued() {
            synchronized (MigrationLimiter.this) {
                return state == TicketState.QUEUED;
            }
        }

        /** Waits until this ticket holds a slot: true, or false once it was released (withdrawn) while waiting. */
        public boolean awaitGranted() throws InterruptedException {
            synchronized (MigrationLimiter.this) {
                while (state == TicketState.QUEUED) {
                    MigrationLimiter.this.wait();
                }
                return state == TicketState.GRANTED;
            }
        }

        /**
         * Gives the slot back (the migration ended), or leaves the queue (cancelled while queued); the next queued
         * ticket gets the slot. Idempotent.
         */
        public void release() {
            synchronized (MigrationLimiter.this) {
                if (state == TicketState.GRANTED) {
                    outgoing--;
                } else if (state == TicketState.QUEUED) {
                    queue.remove(this);
                }
                state = TicketState.RELEASED;
                grantQueued();
                MigrationLimiter.this.notifyAll();
            }
        }

        /** Why this ticket waits, naming the limit; empty unless queued. */
        public String waitingFor() {
            synchronized (MigrationLimiter.this) {
                if (state != TicketState.QUEUED) {
                    return "";
                }
                int ahead = 0;
                for (Ticket t : queue) {
                    if (t == this) {
                        break;
                    }
                    ahead++;
                }
                return outgoing + " of " + limits.maxOutgoing() + " outgoing migrations running"
                        + " (--max-outgoing-migrations " + limits.maxOutgoing() + "); " + ahead + " queued ahead";
            }
        }
    }

    /**
     * Claims an outgoing slot for {@code name}: granted when one is free and nobody waits, else queued behind the
     * waiting ones; with {@link WhenBusy#REFUSE}, RESOURCE_EXHAUSTED instead of queueing.
     */
    public synchronized Ticket outgoing(String name) {
        if (outgoing < limits.maxOutgoing() && queue.isEmpty()) {
            outgoing++;
            return new Ticket(name, TicketState.GRANTED);
        }
        if (limits.whenBusy() == WhenBusy.REFUSE) {
            throw exhausted(OUTGOING_LIMIT, "--max-outgoing-migrations", limits.maxOutgoing(), outgoing,
                    name + " refused: " + outgoing + " of " + limits.maxOutgoing()
                            + " outgoing migrations are running on this agent (--max-outgoing-migrations "
                            + limits.maxOutgoing() + ", --when-busy refuse); retry when one has ended");
        }
        Ticket t = new Ticket(name, TicketState.QUEUED);
        queue.addLast(t);
        return t;
    }

    private void grantQueued() {
        while (outgoing < limits.maxOutgoing() && !queue.isEmpty()) {
            queue.pollFirst().state = TicketState.GRANTED;
            outgoing++;
        }
    }

    /** An incoming migration's slot: held from NegotiateMigration until its session is terminal. */
    public final class IncomingSlot {
        private BooleanSupplier active = () -> true; // guarded by MigrationLimiter.this: negotiating until attached
        private boolean released; // guarded by MigrationLimiter.this

        private boolean attached; // guarded by MigrationLimiter.this: holdWhile was called

        /** From now on the slot is held while {@code active} says so (the session is not terminal). */
        public void holdWhile(BooleanSupplier active) {
            synchronized (MigrationLimiter.this) {
                this.active = Objects.requireNonNull(active, "active");
                attached = true;
            }
        }

        /** Frees the slot now (negotiation failed). Idempotent. */
        public void release() {
            synchronized (MigrationLimiter.this) {
                released = true;
                incoming.remove(this);
            }
        }

        /** Frees the slot unless a session holds it ({@link #holdWhile}): the end of a negotiation, however it went. */
        public void releaseUnlessHeld() {
            synchronized (MigrationLimiter.this) {
                if (!attached) {
                    release();
                }
            }
        }
    }

    /**
     * Claims an incoming slot for {@code name} or refuses with RESOURCE_EXHAUSTED (ErrorInfo reason
     * {@value #INCOMING_LIMIT}); call before allocating anything for the migration.
     */
    public synchronized IncomingSlot incoming(String name) {
        int active = activeIncoming();
        if (active >= limits.maxIncoming()) {
            throw exhausted(INCOMING_LIMIT, "--max-incoming-migrations", limits.maxIncoming(), active,
                    name + " refused: " + active + " of " + limits.maxIncoming()
                            + " incoming migrations are running on this agent (--max-incoming-migrations "
                            + limits.maxIncoming() + "); retry when one has ended");
        }
        IncomingSlot s = new IncomingSlot();
        incoming.add(s);
        return s;
    }

    /** Incoming slots held now; drops those whose session has ended. */
    private int activeIncoming() {
        for (Iterator<IncomingSlot> i = incoming.iterator(); i.hasNext();) {
            IncomingSlot s = i.next();
            if (s.released || !s.active.getAsBoolean()) {
                i.remove();
            }
        }
        return incoming.size();
    }

    /** The limits and their use now, for GetMigrationLimits. */
    public synchronized MigrationLimits toProto() {
        return MigrationLimits.newBuilder().setMaxOutgoingMigrations(limits.maxOutgoing())
                .setMaxIncomingMigrations(limits.maxIncoming())
                .setWhenBusy(limits.whenBusy() == WhenBusy.QUEUE ? MigrationLimits.WhenBusy.QUEUE
                        : MigrationLimits.WhenBusy.REFUSE)
                .setActiveOutgoingMigrations(outgoing).setActiveIncomingMigrations(activeIncoming())
                .setQueuedOutgoingMigrations(queue.size()).build();
    }

    private static StatusRuntimeException exhausted(String reason, String flag, int limit, int active, String message) {
        ErrorInfo info = ErrorInfo.newBuilder().setDomain(dev.ferry.v1.MigrationErrors.DOMAIN).setReason(reason)
                .putMetadata("flag", flag).putMetadata("limit", Integer.toString(limit))
                .putMetadata("active", Integer.toString(active)).build();
        return StatusProto.toStatusRuntimeException(com.google.rpc.Status.newBuilder()
                .setCode(Status.Code.RESOURCE_EXHAUSTED.value()).setMessage(message).addDetails(Any.pack(info)).build());
    }

    /** Whether {@code e} is a refusal at a destination's incoming limit (worth queueing and asking again). */
    public static boolean isIncomingLimit(StatusRuntimeException e) {
        if (e.getStatus().getCode() != Status.Code.RESOURCE_EXHAUSTED) {
            return false;
        }
        com.google.rpc.Status s = StatusProto.fromThrowable(e);
        if (s == null) {
            return false;
        }
        for (Any a : s.getDetailsList()) {
            if (a.is(ErrorInfo.class)) {
                try {
                    if (INCOMING_LIMIT.equals(a.unpack(ErrorInfo.class).getReason())) {
                        return true;
                    }
                } catch (com.google.protobuf.InvalidProtocolBufferException ignored) {
                    // not ours
                }
            }
        }
        return false;
    }
}
