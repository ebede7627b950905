package dev.ferry.kvm.sys;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.sun.jna.Native;
import com.sun.jna.Pointer;
import com.sun.jna.Structure;
import java.io.IOException;
import java.lang.reflect.Array;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import dev.ferry.linux.Errno;
import dev.ferry.linux.Ioctl;
import dev.ferry.linux.LibC;
import dev.ferry.linux.NativeException;
import dev.ferry.linux.PageRegion;
import dev.ferry.linux.PagemapIoctls;
import dev.ferry.linux.PmScanArg;
import dev.ferry.linux.SchedAttr;
import dev.ferry.linux.Signals;
import dev.ferry.linux.UffdIoctls;
import dev.ferry.linux.UffdMsg;
import dev.ferry.linux.UffdioApi;
import dev.ferry.linux.UffdioContinue;
import dev.ferry.linux.UffdioCopy;
import dev.ferry.linux.UffdioRange;
import dev.ferry.linux.UffdioRegister;
import dev.ferry.linux.UffdioWriteprotect;
import dev.ferry.linux.UffdioZeropage;

/**
 * Checks every structure, offset, ioctl number and constant of the bindings against the installed
 * kernel/glibc headers: a C program is generated from the Java side (struct list, field names,
 * constant names), compiled with gcc and run; its {@code sizeof}/{@code offsetof}/macro values are
 * compared with what JNA and the Java constants say. No expected number is typed in here.
 *
 * <p>The kernel headers in {@code src/test/linux-headers} (newer than the installed ones, see the
 * README there) come first on the include path.
 */
class StructLayoutTest {

    /** Java structure class → C type. Every Structure subclass in the package must be listed. */
    static final Map<Class<? extends Structure>, String> STRUCTS = new LinkedHashMap<>();

    static {
        STRUCTS.put(KvmRegs.class, "struct kvm_regs");
        STRUCTS.put(KvmSegment.class, "struct kvm_segment");
        STRUCTS.put(KvmDtable.class, "struct kvm_dtable");
        STRUCTS.put(KvmSregs.class, "struct kvm_sregs");
        STRUCTS.put(KvmFpu.class, "struct kvm_fpu");
        STRUCTS.put(KvmXsave.class, "struct kvm_xsave");
        STRUCTS.put(KvmXcr.class, "struct kvm_xcr");
        STRUCTS.put(KvmXcrs.class, "struct kvm_xcrs");
        STRUCTS.put(KvmMsrEntry.class, "struct kvm_msr_entry");
        STRUCTS.put(KvmLapicState.class, "struct kvm_lapic_state");
        STRUCTS.put(KvmVcpuEvents.class, "struct kvm_vcpu_events");
        STRUCTS.put(KvmMpState.class, "struct kvm_mp_state");
        STRUCTS.put(KvmDebugregs.class, "struct kvm_debugregs");
        STRUCTS.put(KvmPicState.class, "struct kvm_pic_state");
        STRUCTS.put(KvmIoapicState.class, "struct kvm_ioapic_state");
        STRUCTS.put(KvmIrqchip.class, "struct kvm_irqchip");
        STRUCTS.put(KvmPitChannelState.class, "struct kvm_pit_channel_state");
        STRUCTS.put(KvmPitState2.class, "struct kvm_pit_state2");
        STRUCTS.put(KvmPitConfig.class, "struct kvm_pit_config");
        STRUCTS.put(KvmClockData.class, "struct kvm_clock_data");
        STRUCTS.put(KvmUserspaceMemoryRegion.class, "struct kvm_userspace_memory_region");
        STRUCTS.put(KvmDirtyLog.class, "struct kvm_dirty_log");
        STRUCTS.put(KvmClearDirtyLog.class, "struct kvm_clear_dirty_log");
        STRUCTS.put(KvmEnableCap.class, "struct kvm_enable_cap");
        STRUCTS.put(SchedAttr.class, "struct sched_attr");
        STRUCTS.put(KvmCpuidEntry2.class, "struct kvm_cpuid_entry2");
        STRUCTS.put(UffdioApi.class, "struct uffdio_api");
        STRUCTS.put(UffdioRange.class, "struct uffdio_range");
        STRUCTS.put(UffdioRegister.class, "struct uffdio_register");
        STRUCTS.put(UffdioCopy.class, "struct uffdio_copy");
        STRUCTS.put(UffdioZeropage.class, "struct uffdio_zeropage");
        STRUCTS.put(UffdioWriteprotect.class, "struct uffdio_writeprotect");
        STRUCTS.put(UffdioContinue.class, "struct uffdio_continue");
        STRUCTS.put(UffdMsg.class, "struct uffd_msg");
        STRUCTS.put(PmScanArg.class, "struct pm_scan_arg");
        STRUCTS.put(PageRegion.class, "struct page_region");
    }

    /** Classes whose public static final numeric fields are C macros of the same name. */
    static final List<Class<?>> CONSTANT_CLASSES = List.of(
            KvmIoctls.class, UffdIoctls.class, PagemapIoctls.class, Ioctl.class, LibC.class, Errno.class, Signals.class,
            KvmVcpuEvents.class, KvmIrqchip.class, KvmIoapicState.class, KvmLapicState.class,
            KvmXcrs.class, KvmPitState2.class, KvmPitConfig.class, KvmCpuidEntry2.class);

    /** System property naming the vendored kernel headers; the surefire configuration sets it. */
    static final String LINUX_HEADERS_PROPERTY = "ferry.linuxHeaders";

    /** Constants in those classes that are not C macros; each is checked explicitly below. */
    static final Set<String> JAVA_ONLY = Set.of(
            "Signals.GLIBC_SIGSET_SIZE", "Signals.KICK_SIGNAL", "Signals.KERNEL_SIGSET_SIZE", "LibC.SIZEOF_POLLFD");

    record Check(String key, String cExpr, long javaValue, boolean macro) {}

    private static final List<Check> checks = new ArrayList<>();
    private static Map<String, String> cValues;

    @BeforeAll
    static void runGeneratedProgram(@TempDir Path dir) throws Exception {
        buildChecks();
        Path src = dir.resolve("layout.c");
        Files.writeString(src, cProgram(), StandardCharsets.UTF_8);
        Path exe = dir.resolve("layout");
        run(dir, List.of(gcc(), "-std=gnu11", "-Wall", "-I", linuxHeaders().toString(), "-o", exe.toString(), src.toString()),
                "gcc");
        String out = run(dir, List.of(exe.toString()), "generated layout program");
        cValues = new LinkedHashMap<>();
        for (String line : out.split("\n")) {
            int sp = line.lastIndexOf(' ');
            if (sp > 0) {
                cValues.put(line.substring(0, sp), line.substring(sp + 1));
            }
        }
    }

    @Test
    void structSizesAndFieldOffsetsMatchGcc() {
        compare(c -> c.key().startsWith("sizeof ") || c.key().startsWith("offsetof "));
    }

    @Test
    void ioctlNumbersAndConstantsMatchHeaders() {
        compare(Check::macro);
    }

    @Test
    void helperOffsetsMatchGcc() {
        compare(c -> c.key().startsWith("helper "));
    }

    @Test
    void everyStructureClassInThePackageIsChecked() throws Exception {
        Set<String> unchecked = new TreeSet<>();
        for (Class<?> inPackage : List.of(KvmRegs.class, UffdioApi.class)) {
            Path dir = classDirectory(inPackage);
            if (dir == null) {
                return; // running from a jar: the listing check is only meaningful on a classes dir
            }
            try (Stream<Path> files = Files.list(dir)) {
                for (Path f : (Iterable<Path>) files::iterator) {
                    String name = f.getFileName().toString();
                    if (!name.endsWith(".class") || name.contains("$")) {
                        continue;
                    }
                    Class<?> c = Class.forName(inPackage.getPackageName() + "." + name.replace(".class", ""));
                    if (Structure.class.isAssignableFrom(c) && !Modifier.isAbstract(c.getModifiers())
                            && !STRUCTS.containsKey(c)) {
                        unchecked.add(c.getSimpleName());
                    }
                }
            }
        }
        assertTrue(unchecked.isEmpty(), "Structure classes not in StructLayoutTest.STRUCTS: " + unchecked);
    }

    @Test
    void everyKvmRunOffsetIsChecked() throws Exception {
        Set<String> checkedKeys = new TreeSet<>();
        for (Check c : checks) {
            checkedKeys.add(c.key());
        }
        for (Class<?> cls : List.of(KvmRun.class, UffdMsg.class, UffdioCopy.class, UffdioZeropage.class, PmScanArg.class,
                PageRegion.class)) {
            for (Field f : cls.getDeclaredFields()) {
                if (Modifier.isStatic(f.getModifiers()) && (f.getName().startsWith("OFF_") || f.getName().equals("SIZE"))) {
                    assertTrue(checkedKeys.contains("helper " + cls.getSimpleName() + "." + f.getName()),
                            cls.getSimpleName() + "." + f.getName() + " has no gcc check");
                }
            }
        }
    }

    @Test
    void exitReasonNamesCoverAllConstants() throws Exception {
        for (Field f : KvmIoctls.class.getFields()) {
            if (f.getName().startsWith("KVM_EXIT_") && !f.getName().startsWith("KVM_EXIT_IO_")) {
                assertEquals(f.getName(), KvmIoctls.exitReasonName(f.getInt(null)));
            }
            if (f.getName().startsWith("KVM_MP_STATE_")) {
                assertEquals(f.getName(), KvmIoctls.mpStateName(f.getInt(null)));
            }
        }
        assertEquals("KVM_EXIT_#999", KvmIoctls.exitReasonName(999));
    }

    @Test
    void errnoMessagesNameTheOperationAndSymbol() {
        NativeException e = new NativeException("KVM_RUN", Errno.EINTR);
        assertEquals("KVM_RUN: EINTR (4): Interrupted system call", e.getMessage());
        assertEquals("EINTR", e.errnoName());
        assertEquals("KVM_RUN", e.operation());
        // a real failing call: the errno comes from the thread that made it
        NativeException open = assertThrowsNative(() -> NativeException.check(
                LibC.open("/nonexistent/ferry-" + System.nanoTime(), LibC.O_RDONLY), "open(/nonexistent)"));
        assertEquals(Errno.ENOENT, open.errno());
        assertEquals("open(/nonexistent): ENOENT (2): No such file or directory", open.getMessage());
        NativeException badIoctl = assertThrowsNative(() -> NativeException.check(LibC.ioctl(-1, KvmIoctls.KVM_RUN, 0L), "KVM_RUN"));
        assertEquals("EBADF", badIoctl.errnoName());
        assertEquals(5L, NativeException.check(5L, "x"));
    }

    private static NativeException assertThrowsNative(Runnable r) {
        try {
            r.run();
        } catch (NativeException e) {
            return e;
        }
        return fail("expected NativeException");
    }

    // ---- building the checks -------------------------------------------------------------------

    private static void buildChecks() throws Exception {
        checks.clear();
        for (Map.Entry<Class<? extends Structure>, String> e : STRUCTS.entrySet()) {
            Structure s = Structure.newInstance(e.getKey());
            String c = e.getValue();
            add("sizeof " + c, "sizeof(" + c + ")", s.size());
            addFields(s, c, "", 0);
        }
        for (Class<?> cls : CONSTANT_CLASSES) {
            for (Field f : cls.getDeclaredFields()) {
                int mod = f.getModifiers();
                if (!Modifier.isPublic(mod) || !Modifier.isStatic(mod) || !Modifier.isFinal(mod)) {
                    continue;
                }
                if (!f.getType().isPrimitive() || f.getType() == boolean.class) {
                    continue;
                }
                String qualified = cls.getSimpleName() + "." + f.getName();
                if (JAVA_ONLY.contains(qualified)) {
                    continue;
                }
                long value = ((Number) f.get(null)).longValue();
                checks.add(new Check("const " + qualified, f.getName(), value, true));
            }
        }
        helperChecks();
    }

    private static void addFields(Structure s, String cType, String prefix, long base) throws Exception {
        Structure.FieldOrder order = s.getClass().getAnnotation(Structure.FieldOrder.class);
        assertFalse(order == null, s.getClass() + " lacks @FieldOrder");
        for (String name : order.value()) {
            Field f = s.getClass().getField(name);
            Object value = f.get(s);
            long off = base + fieldOffset(s, name);
            String path = prefix + name;
            add("offsetof " + cType + "." + path, "offsetof(" + cType + ", " + path + ")", off);
            add("sizeof " + cType + "." + path, "sizeof(((" + cType + " *)0)->" + path + ")", memberSize(f.getType(), value));
            if (value instanceof Structure nested) {
                addFields(nested, cType, path + ".", off);
            } else if (value instanceof Structure[] arr) {
                for (int i = 0; i < arr.length; i++) {
                    String elem = path + "[" + i + "]";
                    long elemOff = off + (long) i * arr[i].size();
                    add("offsetof " + cType + "." + elem, "offsetof(" + cType + ", " + elem + ")", elemOff);
                    addFields(arr[i], cType, elem + ".", elemOff);
                }
            }
        }
    }

    private static void helperChecks() {
        String run = "struct kvm_run";
        Object[][] kvmRun = {
            {"OFF_REQUEST_INTERRUPT_WINDOW", "request_interrupt_window"},
            {"OFF_IMMEDIATE_EXIT", "immediate_exit"},
            {"OFF_EXIT_REASON", "exit_reason"},
            {"OFF_READY_FOR_INTERRUPT_INJECTION", "ready_for_interrupt_injection"},
            {"OFF_IF_FLAG", "if_flag"},
            {"OFF_FLAGS", "flags"},
            {"OFF_CR8", "cr8"},
            {"OFF_APIC_BASE", "apic_base"},
            {"OFF_EXIT_UNION", "io"},
            {"OFF_HW_HARDWARE_EXIT_REASON", "hw.hardware_exit_reason"},
            {"OFF_FAIL_ENTRY_HARDWARE_ENTRY_FAILURE_REASON", "fail_entry.hardware_entry_failure_reason"},
            {"OFF_FAIL_ENTRY_CPU", "fail_entry.cpu"},
            {"OFF_EX_EXCEPTION", "ex.exception"},
            {"OFF_EX_ERROR_CODE", "ex.error_code"},
            {"OFF_IO_DIRECTION", "io.direction"},
            {"OFF_IO_SIZE", "io.size"},
            {"OFF_IO_PORT", "io.port"},
            {"OFF_IO_COUNT", "io.count"},
            {"OFF_IO_DATA_OFFSET", "io.data_offset"},
            {"OFF_MMIO_PHYS_ADDR", "mmio.phys_addr"},
            {"OFF_MMIO_DATA", "mmio.data"},
            {"OFF_MMIO_LEN", "mmio.len"},
            {"OFF_MMIO_IS_WRITE", "mmio.is_write"},
            {"OFF_INTERNAL_SUBERROR", "internal.suberror"},
            {"OFF_INTERNAL_NDATA", "internal.ndata"},
            {"OFF_INTERNAL_DATA", "internal.data"},
            {"OFF_SYSTEM_EVENT_TYPE", "system_event.type"},
            {"OFF_SYSTEM_EVENT_NDATA", "system_event.ndata"},
            {"OFF_SYSTEM_EVENT_DATA", "system_event.data"},
            {"OFF_MSR_ERROR", "msr.error"},
            {"OFF_MSR_REASON", "msr.reason"},
            {"OFF_MSR_INDEX", "msr.index"},
            {"OFF_MSR_DATA", "msr.data"},
            {"OFF_KVM_VALID_REGS", "kvm_valid_regs"},
            {"OFF_KVM_DIRTY_REGS", "kvm_dirty_regs"},
            {"OFF_S", "s"},
        };
        for (Object[] r : kvmRun) {
            helper("KvmRun." + r[0], "offsetof(" + run + ", " + r[1] + ")", staticInt(KvmRun.class, (String) r[0]));
        }
        helper("KvmRun.EXIT_UNION_SIZE", "sizeof(((" + run + " *)0)->padding)", KvmRun.EXIT_UNION_SIZE);
        helper("KvmRun.SIZEOF_KVM_RUN", "sizeof(" + run + ")", KvmRun.SIZEOF_KVM_RUN);
        helper("KvmRun.system_event.flags", "offsetof(" + run + ", system_event.flags)", KvmRun.OFF_SYSTEM_EVENT_DATA);

        String msg = "struct uffd_msg";
        Object[][] uffd = {
            {"OFF_EVENT", "event"},
            {"OFF_ARG", "arg"},
            {"OFF_PAGEFAULT_FLAGS", "arg.pagefault.flags"},
            {"OFF_PAGEFAULT_ADDRESS", "arg.pagefault.address"},
            {"OFF_PAGEFAULT_PTID", "arg.pagefault.feat.ptid"},
            {"OFF_FORK_UFD", "arg.fork.ufd"},
            {"OFF_REMAP_FROM", "arg.remap.from"},
            {"OFF_REMAP_TO", "arg.remap.to"},
            {"OFF_REMAP_LEN", "arg.remap.len"},
            {"OFF_REMOVE_START", "arg.remove.start"},
            {"OFF_REMOVE_END", "arg.remove.end"},
        };
        for (Object[] r : uffd) {
            helper("UffdMsg." + r[0], "offsetof(" + msg + ", " + r[1] + ")", staticInt(UffdMsg.class, (String) r[0]));
        }
        helper("UffdMsg.SIZE", "sizeof(" + msg + ")", UffdMsg.SIZE);
        helper("UffdioCopy.OFF_DST", "offsetof(struct uffdio_copy, dst)", UffdioCopy.OFF_DST);
        helper("UffdioCopy.OFF_SRC", "offsetof(struct uffdio_copy, src)", UffdioCopy.OFF_SRC);
        helper("UffdioCopy.OFF_LEN", "offsetof(struct uffdio_copy, len)", UffdioCopy.OFF_LEN);
        helper("UffdioCopy.OFF_MODE", "offsetof(struct uffdio_copy, mode)", UffdioCopy.OFF_MODE);
        helper("UffdioCopy.OFF_COPY", "offsetof(struct uffdio_copy, copy)", UffdioCopy.OFF_COPY);
        helper("UffdioCopy.SIZE", "sizeof(struct uffdio_copy)", UffdioCopy.SIZE);
        helper("UffdioZeropage.OFF_RANGE_START", "offsetof(struct uffdio_zeropage, range.start)", UffdioZeropage.OFF_RANGE_START);
        helper("UffdioZeropage.OFF_RANGE_LEN", "offsetof(struct uffdio_zeropage, range.len)", UffdioZeropage.OFF_RANGE_LEN);
        helper("UffdioZeropage.OFF_MODE", "offsetof(struct uffdio_zeropage, mode)", UffdioZeropage.OFF_MODE);
        helper("UffdioZeropage.OFF_ZEROPAGE", "offsetof(struct uffdio_zeropage, zeropage)", UffdioZeropage.OFF_ZEROPAGE);
        helper("UffdioZeropage.SIZE", "sizeof(struct uffdio_zeropage)", UffdioZeropage.SIZE);
        helper("UffdioRange.SIZE(wake)", "sizeof(struct uffdio_range)", 16);
        for (String f : List.of("size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages",
                "category_inverted", "category_mask", "category_anyof_mask", "return_mask")) {
            String name = "OFF_" + f.toUpperCase(Locale.ROOT);
            helper("PmScanArg." + name, "offsetof(struct pm_scan_arg, " + f + ")", staticInt(PmScanArg.class, name));
        }
        helper("PmScanArg.SIZE", "sizeof(struct pm_scan_arg)", PmScanArg.SIZE);
        helper("PageRegion.OFF_START", "offsetof(struct page_region, start)", PageRegion.OFF_START);
        helper("PageRegion.OFF_END", "offsetof(struct page_region, end)", PageRegion.OFF_END);
        helper("PageRegion.OFF_CATEGORIES", "offsetof(struct page_region, categories)", PageRegion.OFF_CATEGORIES);
        helper("PageRegion.SIZE", "sizeof(struct page_region)", PageRegion.SIZE);

        helper("KvmMsrs.HEADER_SIZE", "sizeof(struct kvm_msrs)", KvmMsrs.HEADER_SIZE);
        helper("KvmMsrs.entries", "offsetof(struct kvm_msrs, entries)", KvmMsrs.HEADER_SIZE);
        helper("KvmMsrs.ENTRY_SIZE", "sizeof(struct kvm_msr_entry)", KvmMsrs.ENTRY_SIZE);
        helper("KvmMsrs.ENTRY_INDEX_OFFSET", "offsetof(struct kvm_msr_entry, index)", KvmMsrs.ENTRY_INDEX_OFFSET);
        helper("KvmMsrs.ENTRY_DATA_OFFSET", "offsetof(struct kvm_msr_entry, data)", KvmMsrs.ENTRY_DATA_OFFSET);
        helper("KvmMsrList.HEADER_SIZE", "sizeof(struct kvm_msr_list)", KvmMsrList.HEADER_SIZE);
        helper("KvmMsrList.indices", "offsetof(struct kvm_msr_list, indices)", KvmMsrList.HEADER_SIZE);
        helper("KvmCpuid2.HEADER_SIZE", "sizeof(struct kvm_cpuid2)", KvmCpuid2.HEADER_SIZE);
        helper("KvmCpuid2.entries", "offsetof(struct kvm_cpuid2, entries)", KvmCpuid2.HEADER_SIZE);
        helper("KvmCpuid2.ENTRY_SIZE", "sizeof(struct kvm_cpuid_entry2)", KvmCpuid2.ENTRY_SIZE);
        helper("KvmSignalMask.HEADER_SIZE", "sizeof(struct kvm_signal_mask)", KvmSignalMask.HEADER_SIZE);
        helper("KvmSignalMask.sigset", "offsetof(struct kvm_signal_mask, sigset)", KvmSignalMask.HEADER_SIZE);
        // glibc's _NSIG is 65 (signals 1..64): the kernel sigset is (_NSIG - 1) / 8 bytes
        helper("Signals.KERNEL_SIGSET_SIZE", "(_NSIG - 1) / 8", Signals.KERNEL_SIGSET_SIZE);
        helper("KvmSregs.INTERRUPT_BITMAP_WORDS", "(KVM_NR_INTERRUPTS + 63) / 64", KvmSregs.INTERRUPT_BITMAP_WORDS);
        helper("Signals.GLIBC_SIGSET_SIZE", "sizeof(sigset_t)", Signals.GLIBC_SIGSET_SIZE);
        helper("Signals.KICK_SIGNAL", "SIGRTMIN + 6", Signals.KICK_SIGNAL);
        helper("LibC.SIZEOF_POLLFD", "sizeof(struct pollfd)", LibC.SIZEOF_POLLFD);
        helper("Native.POINTER_SIZE", "sizeof(void *)", Native.POINTER_SIZE);
        // Each IOAPIC redirection bit-field set to all ones in C: its bits in the entry's __u64 view.
        String entry = "({ struct kvm_ioapic_state s; memset(&s, 0, sizeof s); ";
        for (IoapicRedirectionBits f : IoapicRedirectionBits.values()) {
            helper("IoapicRedirectionBits." + f.name(), entry + "s.redirtbl[1].fields." + f.cName() + " = ones; "
                    + "(long long) s.redirtbl[1].bits; })", f.mask());
        }
        helper("IoapicRedirectionBits.RESERVED_MASK", entry + "s.redirtbl[1].fields.reserve = ones; "
                + "memset(s.redirtbl[1].fields.reserved, 0xff, sizeof s.redirtbl[1].fields.reserved); "
                + "(long long) s.redirtbl[1].bits; })", IoapicRedirectionBits.RESERVED_MASK);
    }

    private static void add(String key, String cExpr, long javaValue) {
        checks.add(new Check(key, cExpr, javaValue, false));
    }

    private static void helper(String key, String cExpr, long javaValue) {
        checks.add(new Check("helper " + key, cExpr, javaValue, false));
    }

    private static int staticInt(Class<?> cls, String name) {
        try {
            Field f = cls.getDeclaredField(name);
            f.setAccessible(true);
            return f.getInt(null);
        } catch (ReflectiveOperationException e) {
            throw new AssertionError(cls.getSimpleName() + "." + name + " missing", e);
        }
    }

    private static long fieldOffset(Structure s, String name) throws Exception {
        Method m = Structure.class.getDeclaredMethod("fieldOffset", String.class);
        m.setAccessible(true);
        return (int) m.invoke(s, name);
    }

    private static long memberSize(Class<?> type, Object value) {
        if (type.isArray()) {
            int n = Array.getLength(value);
            Class<?> comp = type.getComponentType();
            if (Structure.class.isAssignableFrom(comp)) {
                return n == 0 ? 0 : (long) n * ((Structure) Array.get(value, 0)).size();
            }
            return (long) n * primitiveSize(comp);
        }
        if (Structure.class.isAssignableFrom(type)) {
            return ((Structure) value).size();
        }
        return primitiveSize(type);
    }

    private static int primitiveSize(Class<?> t) {
        if (t == byte.class) {
            return 1;
        } else if (t == short.class) {
            return 2;
        } else if (t == int.class) {
            return 4;
        } else if (t == long.class) {
            return 8;
        } else if (t == Pointer.class) {
            return Native.POINTER_SIZE;
        }
        throw new AssertionError("unexpected field type in a kernel structure: " + t);
    }

    // ---- C side ----------------------------------------------------------------------------------

    private static String cProgram() {
        StringBuilder b = new StringBuilder();
        b.append("""
                #define _GNU_SOURCE
                #include <stddef.h>
                #include <stdio.h>
                #include <string.h>
                #include <errno.h>
                #include <fcntl.h>
                #include <poll.h>
                #include <signal.h>
                #include <sys/eventfd.h>
                #include <sys/mman.h>
                #include <sys/resource.h>
                #include <sys/syscall.h>
                #include <linux/fs.h>
                #include <linux/kvm.h>
                #include <linux/sched.h>
                #include <linux/sched/types.h>
                #include <linux/userfaultfd.h>

                #define P(key, expr) printf("%s %lld\\n", key, (long long) (expr))

                /* Not a constant, so setting a bit-field to it truncates without a warning. */
                static volatile unsigned long long ones = ~0ULL;

                int main(void) {
                """);
        for (Check c : checks) {
            String key = c.key().replace("\\", "\\\\").replace("\"", "\\\"");
            if (c.macro()) {
                b.append("#ifdef ").append(c.cExpr()).append('\n');
                b.append("    P(\"").append(key).append("\", ").append(c.cExpr()).append(");\n");
                b.append("#else\n");
                b.append("    printf(\"%s MISSING\\n\", \"").append(key).append("\");\n");
                b.append("#endif\n");
            } else {
                b.append("    P(\"").append(key).append("\", ").append(c.cExpr()).append(");\n");
            }
        }
        b.append("    return 0;\n}\n");
        return b.toString();
    }

    private void compare(java.util.function.Predicate<Check> which) {
        List<String> mismatches = new ArrayList<>();
        int compared = 0;
        for (Check c : checks) {
            if (!which.test(c)) {
                continue;
            }
            String got = cValues.get(c.key());
            compared++;
            if (got == null) {
                mismatches.add(c.key() + ": no output from the C program");
            } else if (got.equals("MISSING")) {
                mismatches.add(c.key() + ": " + c.cExpr() + " is not defined by the installed headers"
                        + " (add it to JAVA_ONLY with an explicit check if it is a Java-only constant)");
            } else if (Long.parseLong(got) != c.javaValue()) {
                mismatches.add(String.format("%s: C says %s (0x%x), Java says %d (0x%x)",
                        c.key(), got, Long.parseLong(got), c.javaValue(), c.javaValue()));
            }
        }
        assertTrue(compared > 0, "nothing compared");
        assertTrue(mismatches.isEmpty(), mismatches.size() + " of " + compared + " layout checks differ from the C headers:\n  "
                + String.join("\n  ", mismatches));
    }

    private static String gcc() {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            Path p = Path.of(dir, "gcc");
            if (Files.isExecutable(p)) {
                return p.toString();
            }
        }
        return fail("gcc not found on PATH: gcc and the kernel headers (linux/kvm.h, linux/userfaultfd.h) are build "
                + "requirements of native-kvm; StructLayoutTest compiles a C program to check the JNA layouts");
    }

    /** The vendored kernel headers: {@value #LINUX_HEADERS_PROPERTY}, else src/test/linux-headers of the module. */
    private static Path linuxHeaders() {
        String configured = System.getProperty(LINUX_HEADERS_PROPERTY);
        Path dir = configured != null && !configured.isBlank()
                ? Path.of(configured)
                : Path.of(System.getProperty("user.dir"), "src", "test", "linux-headers");
        if (!Files.isRegularFile(dir.resolve("linux/userfaultfd.h")) || !Files.isRegularFile(dir.resolve("linux/fs.h"))) {
            return fail("vendored kernel headers not found in " + dir.toAbsolutePath() + " (set -D" + LINUX_HEADERS_PROPERTY
                    + " to native-kvm/src/test/linux-headers)");
        }
        return dir.toAbsolutePath();
    }

    private static String run(Path dir, List<String> cmd, String what) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail(what + " timed out");
        }
        String text = new String(out, StandardCharsets.UTF_8);
        if (p.exitValue() != 0) {
            fail(what + " failed (exit " + p.exitValue() + "): " + String.join(" ", cmd) + "\n" + text);
        }
        return text;
    }

    private static Path classDirectory(Class<?> inPackage) throws URISyntaxException {
        var src = inPackage.getProtectionDomain().getCodeSource();
        if (src == null) {
            return null;
        }
        Path root = Path.of(src.getLocation().toURI());
        if (!Files.isDirectory(root)) {
            return null;
        }
        return root.resolve(inPackage.getPackageName().replace('.', '/'));
    }
}
