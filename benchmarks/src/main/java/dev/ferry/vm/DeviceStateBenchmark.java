package dev.ferry.vm;

import dev.ferry.backends.Backends;
import dev.ferry.guest.WorkloadSpec;
import dev.ferry.state.SectionSet;
import dev.ferry.state.StateCodec;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The device state of a switchover, both halves, on a paused 1-vCPU guest of the preferred backend (KVM where
 * /dev/kvm opens, else the process backend): what the source does inside the downtime (save every section and
 * encode them) and what the destination does (decode, validate, restore). Each round trip through the kernel's
 * vCPU ioctls is included, so on KVM the figure is mostly ioctls and the structures around them.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class DeviceStateBenchmark {
    @Param({"auto"})
    public String backend;

    private GuestVm vm;
    private byte[] saved;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        GuestBackend b = Backends.open(Backends.Choice.parse(backend)).preferred();
        vm = b.create(new VmConfig(1, 8L << 20, 1, WorkloadSpec.of(1L << 20, 0, false)), line -> { });
        vm.start();
        vm.pause();
        saved = StateCodec.encode(vm.saveState());
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        vm.close();
    }

    /** The source: every section saved and encoded for the wire. */
    @Benchmark
    public byte[] save() throws Exception {
        return StateCodec.encode(vm.saveState());
    }

    /** The destination: the bytes decoded, checked against this VM and restored into it. */
    @Benchmark
    public SectionSet restore() throws Exception {
        SectionSet arrived = StateCodec.decode(saved);
        vm.validateState(arrived);
        vm.restoreState(arrived);
        return arrived;
    }
}
