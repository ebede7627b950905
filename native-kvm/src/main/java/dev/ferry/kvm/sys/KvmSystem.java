package dev.ferry.kvm.sys;

import static dev.ferry.kvm.sys.KvmIoctls.*;

import com.sun.jna.Native;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicInteger;
import dev.ferry.linux.Errno;
import dev.ferry.linux.Fd;
import dev.ferry.linux.LibC;
import dev.ferry.linux.NativeException;

/** The /dev/kvm system fd: capability queries, CPUID/MSR lists, VM creation. */
public final class KvmSystem implements AutoCloseable {
    public static final String DEV_KVM = "/dev/kvm";
    /** System property naming another KVM device node (tests use a missing one to stand for a host without KVM). */
    public static final String DEVICE_PROPERTY = "ferry.kvm.device";

    private final AtomicInteger fd;

    private KvmSystem(int fd) {
        this.fd = new AtomicInteger(fd);
    }

    /** The KVM device node: /dev/kvm unless {@link #DEVICE_PROPERTY} names another. */
    public static String device() {
        String d = System.getProperty(DEVICE_PROPERTY, "");
        return d.isBlank() ? DEV_KVM : d;
    }

    /** Opens /dev/kvm (O_RDWR | O_CLOEXEC) and checks KVM_GET_API_VERSION is 12. */
    public static KvmSystem open() {
        String dev = device();
        int fd = NativeException.check(LibC.open(dev, LibC.O_RDWR | LibC.O_CLOEXEC), "open(" + dev + ")");
        KvmSystem kvm = new KvmSystem(fd);
        try {
            int version = kvm.apiVersion();
            if (version != KVM_API_VERSION) {
                throw new IllegalStateException("KVM_GET_API_VERSION returned " + version + ", expected " + KVM_API_VERSION);
            }
            return kvm;
        } catch (RuntimeException e) {
            kvm.close();
            throw e;
        }
    }

    /** True when {@link #open()} would succeed. */
    public static boolean available() {
        return unavailableReason().isEmpty();
    }

    /** Why KVM cannot be used here (no /dev/kvm, no permission, wrong API version), or empty. */
    public static Optional<String> unavailableReason() {
        String dev = device();
        if (!Files.exists(Path.of(dev))) {
            return Optional.of(dev + " does not exist (no KVM on this host, or not passed into the container)");
        }
        int fd = LibC.open(dev, LibC.O_RDWR | LibC.O_CLOEXEC);
        if (fd < 0) {
            int errno = Native.getLastError();
            String hint = errno == Errno.EACCES || errno == Errno.EPERM ? " (add the user to the kvm group)" : "";
            return Optional.of("cannot open " + dev + ": " + Errno.name(errno) + " (" + Errno.description(errno) + ")" + hint);
        }
        try {
            int version = LibC.ioctl(fd, KVM_GET_API_VERSION, 0L);
            if (version < 0) {
                int errno = Native.getLastError();
                return Optional.of("KVM_GET_API_VERSION failed: " + Errno.name(errno));
            }
            if (version != KVM_API_VERSION) {
                return Optional.of("KVM API version " + version + ", expected " + KVM_API_VERSION);
            }
            return Optional.empty();
        } finally {
            LibC.close(fd);
        }
    }

    public int fd() {
        int f = fd.get();
        if (f < 0) {
            throw new IllegalStateException("KvmSystem is closed");
        }
        return f;
    }

    public int apiVersion() {
        return Fd.ioctl(fd(), KVM_GET_API_VERSION, 0L, "KVM_GET_API_VERSION");
    }

    /** KVM_CHECK_EXTENSION on /dev/kvm: 0 if unsupported, else 1 or a capability-specific value. */
    public int checkExtension(int cap) {
        return Fd.ioctl(fd(), KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION");
    }

    /** Size of the vCPU mmap area (struct kvm_run plus the PIO/coalesced-MMIO pages). */
    public int vcpuMmapSize() {
        return Fd.ioctl(fd(), KVM_GET_VCPU_MMAP_SIZE, 0L, "KVM_GET_VCPU_MMAP_SIZE");
    }

    /** MSRs KVM can save/restore (KVM_GET_MSR_INDEX_LIST). */
    public int[] msrIndexList() {
        return KvmMsrList.query(fd(), KVM_GET_MSR_INDEX_LIST, "KVM_GET_MSR_INDEX_LIST");
    }

    /** MSRs describing host/KVM features (KVM_GET_MSR_FEATURE_INDEX_LIST). */
    public int[] msrFeatureIndexList() {
        return KvmMsrList.query(fd(), KVM_GET_MSR_FEATURE_INDEX_LIST, "KVM_GET_MSR_FEATURE_INDEX_LIST");
    }

    /** KVM_GET_SUPPORTED_CPUID, growing the buffer on E2BIG. */
    public KvmCpuid2 supportedCpuid() {
        int capacity = 128;
        while (true) {
            KvmCpuid2 cpuid = new KvmCpuid2(capacity);
            int rc = LibC.ioctl(fd(), KVM_GET_SUPPORTED_CPUID, cpuid.pointer());
            if (rc >= 0) {
                return cpuid;
            }
            int errno = Native.getLastError();
            if (errno != Errno.E2BIG || capacity >= 1 << 14) {
                throw new NativeException("KVM_GET_SUPPORTED_CPUID", errno);
            }
            capacity *= 2;
        }
    }

    /** KVM_CREATE_VM (type 0). */
    public KvmVm createVm() {
        int mmapSize = vcpuMmapSize();
        int vmFd = Fd.ioctl(fd(), KVM_CREATE_VM, 0L, "KVM_CREATE_VM");
        return new KvmVm(vmFd, mmapSize);
    }

    /** Closes /dev/kvm; VMs created from it stay usable. Idempotent. */
    @Override
    public void close() {
        Fd.close(fd.getAndSet(-1), DEV_KVM);
    }
}
