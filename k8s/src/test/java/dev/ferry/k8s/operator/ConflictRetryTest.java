package dev.ferry.k8s.operator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.fabric8.kubernetes.client.KubernetesClientException;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** An edit that lost a race to another writer (409 Conflict) is made again; other failures are not retried. */
class ConflictRetryTest {
    static KubernetesClientException status(int code) {
        return new KubernetesClientException("HTTP " + code, code, null);
    }

    @Test
    void aConflictIsRetriedUntilTheEditLands() {
        AtomicInteger calls = new AtomicInteger();
        String r = MigrationOperator.onConflictRetry(() -> {
            if (calls.incrementAndGet() < 3) {
                throw status(409);
            }
            return "edited";
        });
        assertEquals("edited", r);
        assertEquals(3, calls.get());
    }

    @Test
    void conflictsWithoutEndGiveUpAfterFiveAttempts() {
        AtomicInteger calls = new AtomicInteger();
        KubernetesClientException e = assertThrows(KubernetesClientException.class,
                () -> MigrationOperator.onConflictRetry(() -> {
                    calls.incrementAndGet();
                    throw status(409);
                }));
        assertEquals(409, e.getCode());
        assertEquals(5, calls.get());
    }

    @Test
    void otherFailuresAreNotRetried() {
        AtomicInteger calls = new AtomicInteger();
        KubernetesClientException e = assertThrows(KubernetesClientException.class,
                () -> MigrationOperator.onConflictRetry(() -> {
                    calls.incrementAndGet();
                    throw status(404);
                }));
        assertEquals(404, e.getCode());
        assertEquals(1, calls.get());
    }
}
