package dev.ferry.control.grpc;


import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;

/**
 * Runs a unary call body and answers with its value or a gRPC status, never a bare exception:
 * bad arguments are INVALID_ARGUMENT, a call not valid in the current state ({@link NotValidInStateException})
 * FAILED_PRECONDITION, anything unexpected, including any other IllegalStateException, INTERNAL (logged once with
 * its stack trace, which the client never sees).
 */
public final class Calls {
    private static final System.Logger LOG = System.getLogger(Calls.class.getName());

    private Calls() {}

    @FunctionalInterface
    public interface Body<T> {
        T run() throws Exception;
    }

    public static <T> void unary(StreamObserver<T> out, Body<T> body) {
        T value;
        try {
            value = body.run();
        } catch (StatusRuntimeException e) {
            out.onError(e);
            return;
        } catch (NotValidInStateException e) { // includes IllegalTransitionException
            out.onError(Status.FAILED_PRECONDITION.withDescription(e.getMessage()).asRuntimeException());
            return;
        } catch (IllegalArgumentException e) {
            out.onError(Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException());
            return;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            out.onError(Status.CANCELLED.withDescription("interrupted").asRuntimeException());
            return;
        } catch (Exception | Error e) {
            // Logged here once with its trace; the client gets the message only (withCause is not sent on the wire).
            LOG.log(System.Logger.Level.ERROR, "internal error", e);
            out.onError(Status.INTERNAL.withDescription(e.getClass().getSimpleName() + ": " + e.getMessage())
                    .asRuntimeException());
            return;
        }
        out.onNext(value);
        out.onCompleted();
    }
}
