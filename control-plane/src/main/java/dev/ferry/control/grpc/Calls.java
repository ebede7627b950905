package dev.ferry.control.grpc;


import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;

/**
 * Runs a unary call body and answers with its value or a gRPC status, never a bare exception:
 * bad arguments are INVALID_ARGUMENT, a call not valid in the current state FAILED_PRECONDITION,
 * anything unexpected INTERNAL (and logged).
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
        } catch (IllegalStateException e) { // includes IllegalTransitionException
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
            LOG.log(System.Logger.Level.ERROR, "internal error", e);
            out.onError(Status.INTERNAL.withDescription(String.valueOf(e.getMessage())).withCause(e).asRuntimeException());
            return;
        }
        out.onNext(value);
        out.onCompleted();
    }
}
