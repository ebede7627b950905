package dev.ferry.control.migration;

import io.grpc.ClientInterceptor;
import io.grpc.ServerInterceptor;

/**
 * The spans of this agent's migrations, as the engine marks them: one root per migration, a child per phase. The
 * engine sees only this; OpenTelemetry implements it at the agent's edge ({@code dev.ferry.control.telemetry}),
 * and the two interceptors carry the current span to the peer agent in the calls' metadata, so that both agents'
 * spans of one migration form one trace.
 */
public interface MigrationTracing {
    /**
     * Starts the root span of a migration. Its parent is the context the current gRPC call brought (the caller of
     * CreateMigration), if any; else it starts a new trace.
     */
    Span startMigration(String name);

    /** Added to every channel to a peer agent: sends the span current on the calling thread along. */
    ClientInterceptor clientInterceptor();

    /** Added to every service: a call that brought a span context runs within a child span of it. */
    ServerInterceptor serverInterceptor();

    /** A started span; ended exactly once by whoever started it. */
    interface Span {
        /** A child span, started now. */
        Span child(String name);

        Span set(String key, String value);

        Span set(String key, long value);

        /** A point in time within the span, with numeric details (e.g. the downtime steps). */
        void event(String name, java.util.Map<String, Long> details);

        /** Marks the span failed, with why (no stack trace). */
        void failed(String reason);

        /** Makes this span current on this thread until the scope closes: calls made meanwhile carry it. */
        Scope enter();

        void end();
    }

    /** What {@link Span#enter} returns: closing it restores what was current before. */
    interface Scope extends AutoCloseable {
        @Override
        void close();
    }

    /** Records nothing (warm-up migrations): its scope makes nothing current, so their calls carry no trace. */
    Span NO_SPAN = new Span() {
        @Override
        public Span child(String name) {
            return this;
        }

        @Override
        public Span set(String key, String value) {
            return this;
        }

        @Override
        public Span set(String key, long value) {
            return this;
        }

        @Override
        public void event(String name, java.util.Map<String, Long> details) {}

        @Override
        public void failed(String reason) {}

        @Override
        public Scope enter() {
            return () -> { };
        }

        @Override
        public void end() {}
    };
}
