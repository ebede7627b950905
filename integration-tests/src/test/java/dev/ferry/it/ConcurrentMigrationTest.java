package dev.ferry.it;

import static dev.ferry.it.Agents.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.rpc.ErrorInfo;
import dev.ferry.backends.BackendTestSupport;
import dev.ferry.control.agent.AgentProcess;
import dev.ferry.v1.CancelMigrationRequest;
import dev.ferry.v1.GetMigrationLimitsRequest;
import dev.ferry.v1.GetVmRequest;
import dev.ferry.v1.Migration;
import dev.ferry.v1.MigrationLimits;
import dev.ferry.v1.MigrationMode;
import dev.ferry.v1.MigrationPolicy;
import dev.ferry.v1.Vm;
import dev.ferry.vm.Backend;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Many migrations through one pair of agent processes at once, and the per-agent limits on them
 * (--max-outgoing-migrations, --max-incoming-migrations, --when-busy). Process backend, small guests.
 */
class ConcurrentMigrationTest {
    private static final MigrationMode[] MODES = {MigrationMode.PRECOPY, MigrationMode.POSTCOPY, MigrationMode.HYBRID};

    private static String vm(AgentProcess a, String id) {
        // Dirtying 512 KiB/s, below the 4 MiB/s that holds some migrations back, so every precopy converges.
        return Agents.createVm(a, id, 64 * MIB, 16 * MIB, 512 << 10, false).getName();
    }

    private static void assertCompletedAndVerified(Migration end, AgentProcess dst) {
        assertEquals(Migration.Phase.COMPLETED, end.getPhase(), end.getName() + ": " + end.getError().getMessage());
        assertTrue(end.getStatistics().getMemoryVerified(), end.getName() + " verified");
        Agents.assertGuestRunsIntact(dst, end.getDestinationVm());
    }

    private static MigrationLimits limits(AgentProcess a) {
        return Agents.migrations(a).getMigrationLimits(GetMigrationLimitsRequest.getDefaultInstance());
    }

    private static ErrorInfo errorInfo(StatusRuntimeException e) throws Exception {
        return StatusProto.fromThrowable(e).getDetailsList().stream().filter(d -> d.is(ErrorInfo.class)).findFirst()
                .orElseThrow(() -> new AssertionError("no ErrorInfo in " + e.getStatus())).unpack(ErrorInfo.class);
    }

    @Test
    void eightAtOnceBothWaysInEveryModeWithTheLimitsRaised() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        String[] raised = {"--no-warmup", "--max-outgoing-migrations", "8", "--max-incoming-migrations", "8"};
        AgentProcess a = null;
        AgentProcess b = null;
        ExecutorService pool = Executors.newFixedThreadPool(8);
        try {
            a = Agents.start("conc-a", Backend.PROCESS, raised);
            b = Agents.start("conc-b", Backend.PROCESS, raised);
            assertEquals(8, limits(a).getMaxOutgoingMigrations());
            assertEquals(8, limits(b).getMaxIncomingMigrations());
            record Planned(AgentProcess src, AgentProcess dst, String vm, String id, MigrationMode mode) {}
            List<Planned> plan = new ArrayList<>();
            for (int i = 0; i < 8; i++) {
                AgentProcess src = i % 2 == 0 ? a : b; // four each way
                AgentProcess dst = src == a ? b : a;
                plan.add(new Planned(src, dst, vm(src, "conc-" + i), "conc-" + i, MODES[i % MODES.length]));
            }
            CountDownLatch go = new CountDownLatch(1);
            List<CompletableFuture<Migration>> created = new ArrayList<>();
            for (Planned p : plan) {
                created.add(CompletableFuture.supplyAsync(() -> {
                    try {
                        go.await();
                    } catch (InterruptedException e) {
                        throw new IllegalStateException(e);
                    }
                    return Agents.startMigration(p.src(), p.dst(), p.id(), p.vm(), p.mode(), MigrationPolicy.getDefaultInstance());
                }, pool));
            }
            go.countDown(); // all eight CreateMigration calls at once
            for (int i = 0; i < plan.size(); i++) {
                Migration m = created.get(i).get(120, TimeUnit.SECONDS);
                assertNotEquals(Migration.Phase.QUEUED, m.getPhase(), "within the raised limits nothing queues");
            }
            for (Planned p : plan) {
                Migration end = Agents.watchToEnd(p.src(), "migrations/" + p.id());
                assertEquals(p.mode(), end.getMode());
                assertCompletedAndVerified(end, p.dst());
                assertFalse(Agents.hasVm(p.src(), p.vm()), "the source released " + p.vm());
            }
            MigrationLimits after = limits(a);
            assertEquals(0, after.getActiveOutgoingMigrations(), "every outgoing slot was given back");
            assertEquals(0, after.getActiveIncomingMigrations(), "every incoming slot was given back");
        } finally {
            pool.shutdownNow();
            Agents.stop(a, b);
        }
    }

    @Test
    void beyondTheDefaultLimitMigrationsQueueInOrderAndAllComplete() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        AgentProcess src = null;
        AgentProcess dst = null;
        try {
            src = Agents.start("queue-src", Backend.PROCESS, "--no-warmup"); // defaults: 2 outgoing, queue
            dst = Agents.start("queue-dst", Backend.PROCESS, "--no-warmup", "--max-incoming-migrations", "1");
            MigrationLimits l = limits(src);
            assertEquals(2, l.getMaxOutgoingMigrations());
            assertEquals(2, l.getMaxIncomingMigrations());
            assertEquals(MigrationLimits.WhenBusy.QUEUE, l.getWhenBusy());
            // Held to 4 MiB/s, the first migration (16 MiB written) runs for seconds: the others meet it running.
            MigrationPolicy slow = MigrationPolicy.newBuilder().setBandwidthLimitBytesPerSecond(4 * MIB).setDataStreams(1)
                    .build();
            List<String> vms = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                vms.add(vm(src, "q-" + i));
            }
            Migration first = Agents.startMigration(src, dst, "q-0", vms.get(0), MigrationMode.PRECOPY, slow);
            assertEquals(Migration.Phase.PRECOPY, first.getPhase());
            // The second gets src's second slot, but dst takes one incoming migration: it waits for dst.
            Migration second = Agents.startMigration(src, dst, "q-1", vms.get(1), MigrationMode.HYBRID,
                    MigrationPolicy.getDefaultInstance());
            assertEquals(Migration.Phase.QUEUED, second.getPhase());
            assertTrue(second.getQueuedReason().contains("--max-incoming-migrations 1"), second.getQueuedReason());
            // Both of src's slots are taken now: the third waits for one of them.
            Migration third = Agents.startMigration(src, dst, "q-2", vms.get(2), MigrationMode.POSTCOPY,
                    MigrationPolicy.getDefaultInstance());
            assertEquals(Migration.Phase.QUEUED, third.getPhase());
            assertEquals("2 of 2 outgoing migrations running (--max-outgoing-migrations 2); 0 queued ahead",
                    third.getQueuedReason());
            Migration fourth = Agents.startMigration(src, dst, "q-3", vms.get(3), MigrationMode.PRECOPY,
                    MigrationPolicy.getDefaultInstance());
            assertTrue(fourth.getQueuedReason().endsWith("1 queued ahead"), fourth.getQueuedReason());
            assertEquals(2, limits(src).getQueuedOutgoingMigrations());

            // A queued migration can be cancelled: it never started, and its VM runs on, free.
            Migration cancelled = Agents.migrations(src).cancelMigration(CancelMigrationRequest.newBuilder()
                    .setName(fourth.getName()).build());
            assertEquals(Migration.Phase.CANCELLED, cancelled.getPhase());
            assertEquals(Status.Code.CANCELLED.value(), cancelled.getError().getCode());
            Vm v = Agents.vms(src).getVm(GetVmRequest.newBuilder().setName(vms.get(3)).build());
            assertEquals(Vm.State.RUNNING, v.getState());
            assertEquals("", v.getMigration());
            assertEquals(1, limits(src).getQueuedOutgoingMigrations());

            for (Migration m : List.of(first, second, third)) {
                assertCompletedAndVerified(Agents.watchToEnd(src, m.getName()), dst);
            }
            Agents.assertGuestRunsIntact(src, vms.get(3));
            MigrationLimits after = limits(src);
            assertEquals(0, after.getActiveOutgoingMigrations());
            assertEquals(0, after.getQueuedOutgoingMigrations());
        } finally {
            Agents.stop(src, dst);
        }
    }

    @Test
    void withRefuseTheExtraMigrationsGetResourceExhaustedNamingTheLimit() throws Exception {
        BackendTestSupport.assume(Backend.PROCESS);
        AgentProcess src = null;
        AgentProcess dst = null;
        AgentProcess other = null;
        try {
            src = Agents.start("refuse-src", Backend.PROCESS, "--no-warmup", "--when-busy", "refuse");
            dst = Agents.start("refuse-dst", Backend.PROCESS, "--no-warmup", "--max-incoming-migrations", "1");
            other = Agents.start("refuse-other", Backend.PROCESS, "--no-warmup");
            MigrationPolicy slow = MigrationPolicy.newBuilder().setBandwidthLimitBytesPerSecond(4 * MIB).setDataStreams(1)
                    .build();
            String v0 = vm(src, "r-0");
            String v1 = vm(src, "r-1");
            String v2 = vm(src, "r-2");
            Migration first = Agents.startMigration(src, dst, "r-0", v0, MigrationMode.PRECOPY, slow);

            // dst is at its incoming limit: refused before it allocates anything, and src does not queue.
            AgentProcess s = src;
            AgentProcess d = dst;
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
                    () -> Agents.startMigration(s, d, "r-1", v1, MigrationMode.PRECOPY, slow));
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
            assertTrue(e.getStatus().getDescription().contains("--max-incoming-migrations 1"), e.getStatus().getDescription());
            assertEquals("INCOMING_MIGRATION_LIMIT", errorInfo(e).getReason());
            assertEquals("1", errorInfo(e).getMetadataOrThrow("limit"));
            assertEquals(1, Agents.vms(dst).listVms(dev.ferry.v1.ListVmsRequest.getDefaultInstance()).getVmsCount(),
                    "the destination allocated nothing for the refused migration");
            assertEquals("", Agents.vms(src).getVm(GetVmRequest.newBuilder().setName(v1).build()).getMigration());

            Migration second = Agents.startMigration(src, other, "r-1", v1, MigrationMode.PRECOPY, slow);
            // src runs two outgoing migrations: the third is refused at once, naming the limit.
            e = assertThrows(StatusRuntimeException.class,
                    () -> Agents.startMigration(s, d, "r-2", v2, MigrationMode.PRECOPY, slow));
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
            assertTrue(e.getStatus().getDescription().contains("--max-outgoing-migrations 2"), e.getStatus().getDescription());
            ErrorInfo info = errorInfo(e);
            assertEquals("OUTGOING_MIGRATION_LIMIT", info.getReason());
            assertEquals("2", info.getMetadataOrThrow("limit"));
            assertEquals(MigrationLimits.WhenBusy.REFUSE, limits(src).getWhenBusy());
            assertEquals(Vm.State.RUNNING, Agents.vms(src).getVm(GetVmRequest.newBuilder().setName(v2).build()).getState());

            assertCompletedAndVerified(Agents.watchToEnd(src, first.getName()), dst);
            assertCompletedAndVerified(Agents.watchToEnd(src, second.getName()), other);
            // The slots are free again: the refused migration goes through now.
            Migration third = Agents.startMigration(src, dst, "r-2", v2, MigrationMode.PRECOPY,
                    MigrationPolicy.getDefaultInstance());
            assertCompletedAndVerified(Agents.watchToEnd(src, third.getName()), dst);
        } finally {
            Agents.stop(src, dst, other);
        }
    }
}
