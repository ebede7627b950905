package dev.ferry.control.grpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.control.migration.IllegalTransitionException;
import dev.ferry.linux.Errno;
import dev.ferry.linux.NativeException;
import dev.ferry.v1.Migration;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import org.junit.jupiter.api.Test;

class CallsTest {
    private static final class Recorded implements StreamObserver<String> {
        String value;
        Status status;

        @Override public void onNext(String v) { value = v; }
        @Override public void onError(Throwable t) { status = Status.fromThrowable(t); }
        @Override public void onCompleted() { }
    }

    private static Status statusOf(Calls.Body<String> body) {
        Recorded r = new Recorded();
        Calls.unary(r, body);
        assertNull(r.value);
        return r.status;
    }

    @Test
    void aStateMachineRefusalIsFailedPrecondition() {
        Status s = statusOf(() -> {
            throw new IllegalTransitionException(Migration.Phase.STOP_AND_COPY, Migration.Phase.PRECOPY, "already over");
        });
        assertEquals(Status.Code.FAILED_PRECONDITION, s.getCode());
        assertTrue(s.getDescription().contains("already over"), s.getDescription());
        assertEquals(Status.Code.FAILED_PRECONDITION,
                statusOf(() -> { throw new NotValidInStateException("not now"); }).getCode());
    }

    @Test
    void anyOtherIllegalStateIsInternalWithoutTheTrace() {
        Status s = statusOf(() -> { throw new IllegalStateException("invariant broken"); });
        assertEquals(Status.Code.INTERNAL, s.getCode());
        assertEquals("IllegalStateException: invariant broken", s.getDescription());
        assertNull(s.getCause(), "the cause is not sent to the client");
    }

    @Test
    void badArgumentsAndStatusesPassAsTheyAre() {
        assertEquals(Status.Code.INVALID_ARGUMENT,
                statusOf(() -> { throw new IllegalArgumentException("x"); }).getCode());
        assertEquals(Status.Code.DATA_LOSS,
                statusOf(() -> { throw Status.DATA_LOSS.asRuntimeException(); }).getCode());
        Recorded ok = new Recorded();
        Calls.unary(ok, () -> "fine");
        assertEquals("fine", ok.value);
        assertNull(ok.status);
    }

    @Test
    void aFailedSystemCallKeepsItsCallAndErrno() {
        Status oom = NativeFailures.status("creating the incoming VM vms/a",
                new NativeException("KVM_CREATE_VM", Errno.ENOMEM)).getStatus();
        assertEquals(Status.Code.RESOURCE_EXHAUSTED, oom.getCode());
        assertTrue(oom.getDescription().contains("KVM_CREATE_VM returned ENOMEM"), oom.getDescription());
        assertFalse(oom.getDescription().contains("tsc"), oom.getDescription());
        Status cpuid = NativeFailures.status("x", new NativeException("KVM_SET_CPUID2", Errno.EINVAL)).getStatus();
        assertEquals(Status.Code.FAILED_PRECONDITION, cpuid.getCode());
        assertTrue(cpuid.getDescription().contains("KVM_SET_CPUID2 returned EINVAL"), cpuid.getDescription());
        assertEquals(Status.Code.INTERNAL,
                NativeFailures.status("x", new NativeException("KVM_RUN", Errno.EFAULT)).getStatus().getCode());
    }
}
