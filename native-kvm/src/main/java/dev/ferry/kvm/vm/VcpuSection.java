package dev.ferry.kvm.vm;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import dev.ferry.kvm.state.v1.DebugRegs;
import dev.ferry.kvm.state.v1.Dtable;
import dev.ferry.kvm.state.v1.Msr;
import dev.ferry.kvm.state.v1.Regs;
import dev.ferry.kvm.state.v1.Segment;
import dev.ferry.kvm.state.v1.Sregs;
import dev.ferry.kvm.state.v1.VcpuState;
import dev.ferry.kvm.state.v1.Xcr;
import dev.ferry.kvm.sys.KvmDebugregs;
import dev.ferry.kvm.sys.KvmDtable;
import dev.ferry.kvm.sys.KvmMpState;
import dev.ferry.kvm.sys.KvmRegs;
import dev.ferry.kvm.sys.KvmSegment;
import dev.ferry.kvm.sys.KvmSregs;
import dev.ferry.kvm.sys.KvmVcpu;
import dev.ferry.kvm.sys.KvmXcrs;
import dev.ferry.linux.NativeException;
import dev.ferry.state.RestorePhase;
import dev.ferry.state.SectionSchema;
import dev.ferry.state.StateException;
import dev.ferry.state.Stateful;

/** Section "kvm.vcpu": all of one vCPU's KVM state, saved and restored with the VM paused. */
final class VcpuSection implements Stateful<VcpuState> {
    static final SectionSchema<VcpuState> SCHEMA = SectionSchema
            .builder("kvm.vcpu", VcpuState.getDefaultInstance())
            .version(1).minReadableVersion(1).phase(RestorePhase.VCPU).build();

    private final KvmVcpu vcpu;
    private final int[] msrIndices;
    // Every save and restore of this vCPU goes through the same structures (guarded by this): building a JNA
    // structure (its layout, its native memory, the nested ones) cost more than the ioctl it is for.
    private final KvmRegs regs = new KvmRegs();
    private final KvmSregs sregs = new KvmSregs();
    private final KvmXcrs xcrs = new KvmXcrs();
    private final KvmDebugregs debugregs = new KvmDebugregs();
    private final KvmMpState mpState = new KvmMpState();

    VcpuSection(KvmVcpu vcpu, int[] msrIndices) {
        this.vcpu = vcpu;
        this.msrIndices = msrIndices;
    }

    @Override
    public SectionSchema<VcpuState> schema() {
        return SCHEMA;
    }

    @Override
    public String instanceId() {
        return Integer.toString(vcpu.id());
    }

    @Override
    public synchronized VcpuState saveState() {
        VcpuState.Builder b = VcpuState.newBuilder();
        b.setRegs(toProto(vcpu.getRegs(regs)));
        b.setSregs(toProto(vcpu.getSregs(sregs)));
        b.setXsave(UnsafeByteOperations.unsafeWrap(vcpu.getXsaveBytes())); // a fresh array, never written again
        vcpu.getXcrs(xcrs);
        for (int i = 0; i < xcrs.nr_xcrs; i++) {
            b.addXcrs(Xcr.newBuilder().setXcr(xcrs.xcrs[i].xcr).setValue(xcrs.xcrs[i].value));
        }
        long[] values = vcpu.getMsrs(msrIndices);
        for (int i = 0; i < msrIndices.length; i++) {
            b.addMsrs(Msr.newBuilder().setIndex(msrIndices[i]).setValue(values[i]));
        }
        b.setLapic(UnsafeByteOperations.unsafeWrap(vcpu.getLapicBytes()));
        b.setEvents(UnsafeByteOperations.unsafeWrap(vcpu.getVcpuEventsBytes()));
        b.setMpState(vcpu.getMpState(mpState).mp_state);
        KvmDebugregs d = vcpu.getDebugregs(debugregs);
        DebugRegs.Builder db = DebugRegs.newBuilder().setDr6(d.dr6).setDr7(d.dr7).setFlags(d.flags);
        for (long v : d.db) {
            db.addDb(v);
        }
        b.setDebugregs(db);
        return b.build();
    }

    /** Restores in Firecracker's proven order: mp_state, regs, sregs, xsave, xcrs, debugregs, lapic, msrs, events. */
    @Override
    public synchronized void restoreState(VcpuState s) throws StateException {
        String where = SCHEMA.name() + "/" + vcpu.id();
        checkLength(where, "KvmXsave", s.getXsave(), KvmVcpu.XSAVE_BYTES);
        checkLength(where, "KvmLapicState", s.getLapic(), KvmVcpu.LAPIC_BYTES);
        checkLength(where, "KvmVcpuEvents", s.getEvents(), KvmVcpu.VCPU_EVENTS_BYTES);
        if (s.getXcrsCount() > KvmXcrs.KVM_MAX_XCRS) {
            throw new StateException(where + ": " + s.getXcrsCount() + " XCRs, at most " + KvmXcrs.KVM_MAX_XCRS);
        }
        try {
            mpState.mp_state = s.getMpState();
            vcpu.setMpState(mpState);
            vcpu.setRegs(fill(regs, s.getRegs()));
            vcpu.setSregs(fill(sregs, s.getSregs()));
            vcpu.setXsaveBytes(s.getXsave().toByteArray());
            xcrs.nr_xcrs = s.getXcrsCount();
            xcrs.flags = 0;
            for (int i = 0; i < KvmXcrs.KVM_MAX_XCRS; i++) {
                boolean given = i < s.getXcrsCount();
                xcrs.xcrs[i].xcr = given ? s.getXcrs(i).getXcr() : 0;
                xcrs.xcrs[i].value = given ? s.getXcrs(i).getValue() : 0;
            }
            vcpu.setXcrs(xcrs);
            for (int i = 0; i < debugregs.db.length; i++) {
                debugregs.db[i] = i < s.getDebugregs().getDbCount() ? s.getDebugregs().getDb(i) : 0;
            }
            debugregs.dr6 = s.getDebugregs().getDr6();
            debugregs.dr7 = s.getDebugregs().getDr7();
            debugregs.flags = s.getDebugregs().getFlags();
            vcpu.setDebugregs(debugregs);
            vcpu.setLapicBytes(s.getLapic().toByteArray());
            int[] idx = new int[s.getMsrsCount()];
            long[] val = new long[idx.length];
            for (int i = 0; i < idx.length; i++) {
                idx[i] = s.getMsrs(i).getIndex();
                val[i] = s.getMsrs(i).getValue();
            }
            vcpu.setMsrs(idx, val);
            vcpu.setVcpuEventsBytes(s.getEvents().toByteArray());
        } catch (NativeException e) {
            throw new StateException(where + ": the kernel refused the state: " + e.getMessage());
        }
    }

    private static void checkLength(String where, String struct, ByteString raw, int size) throws StateException {
        if (raw.size() != size) {
            throw new StateException(where + ": " + struct + " is " + size + " bytes, got " + raw.size());
        }
    }

    static Regs toProto(KvmRegs r) {
        return Regs.newBuilder().setRax(r.rax).setRbx(r.rbx).setRcx(r.rcx).setRdx(r.rdx).setRsi(r.rsi).setRdi(r.rdi)
                .setRsp(r.rsp).setRbp(r.rbp).setR8(r.r8).setR9(r.r9).setR10(r.r10).setR11(r.r11).setR12(r.r12)
                .setR13(r.r13).setR14(r.r14).setR15(r.r15).setRip(r.rip).setRflags(r.rflags).build();
    }

    private static KvmRegs fill(KvmRegs r, Regs p) {
        r.rax = p.getRax();
        r.rbx = p.getRbx();
        r.rcx = p.getRcx();
        r.rdx = p.getRdx();
        r.rsi = p.getRsi();
        r.rdi = p.getRdi();
        r.rsp = p.getRsp();
        r.rbp = p.getRbp();
        r.r8 = p.getR8();
        r.r9 = p.getR9();
        r.r10 = p.getR10();
        r.r11 = p.getR11();
        r.r12 = p.getR12();
        r.r13 = p.getR13();
        r.r14 = p.getR14();
        r.r15 = p.getR15();
        r.rip = p.getRip();
        r.rflags = p.getRflags();
        return r;
    }

    static Sregs toProto(KvmSregs s) {
        Sregs.Builder b = Sregs.newBuilder().setCs(toProto(s.cs)).setDs(toProto(s.ds)).setEs(toProto(s.es))
                .setFs(toProto(s.fs)).setGs(toProto(s.gs)).setSs(toProto(s.ss)).setTr(toProto(s.tr))
                .setLdt(toProto(s.ldt)).setGdt(toProto(s.gdt)).setIdt(toProto(s.idt)).setCr0(s.cr0).setCr2(s.cr2)
                .setCr3(s.cr3).setCr4(s.cr4).setCr8(s.cr8).setEfer(s.efer).setApicBase(s.apic_base);
        for (long w : s.interrupt_bitmap) {
            b.addInterruptBitmap(w);
        }
        return b.build();
    }

    private static KvmSregs fill(KvmSregs s, Sregs p) throws StateException {
        if (p.getInterruptBitmapCount() > s.interrupt_bitmap.length) {
            throw new StateException(SCHEMA.name() + ": interrupt bitmap has " + p.getInterruptBitmapCount() + " words");
        }
        fill(s.cs, p.getCs());
        fill(s.ds, p.getDs());
        fill(s.es, p.getEs());
        fill(s.fs, p.getFs());
        fill(s.gs, p.getGs());
        fill(s.ss, p.getSs());
        fill(s.tr, p.getTr());
        fill(s.ldt, p.getLdt());
        fill(s.gdt, p.getGdt());
        fill(s.idt, p.getIdt());
        s.cr0 = p.getCr0();
        s.cr2 = p.getCr2();
        s.cr3 = p.getCr3();
        s.cr4 = p.getCr4();
        s.cr8 = p.getCr8();
        s.efer = p.getEfer();
        s.apic_base = p.getApicBase();
        for (int i = 0; i < s.interrupt_bitmap.length; i++) {
            s.interrupt_bitmap[i] = i < p.getInterruptBitmapCount() ? p.getInterruptBitmap(i) : 0;
        }
        return s;
    }

    static Segment toProto(KvmSegment s) {
        return Segment.newBuilder().setBase(s.base).setLimit(s.limit).setSelector(Short.toUnsignedInt(s.selector))
                .setType(Byte.toUnsignedInt(s.type)).setPresent(s.present).setDpl(s.dpl).setDb(s.db).setS(s.s)
                .setL(s.l).setG(s.g).setAvl(s.avl).setUnusable(s.unusable).build();
    }

    private static KvmSegment fill(KvmSegment s, Segment p) {
        s.base = p.getBase();
        s.limit = p.getLimit();
        s.selector = (short) p.getSelector();
        s.type = (byte) p.getType();
        s.present = (byte) p.getPresent();
        s.dpl = (byte) p.getDpl();
        s.db = (byte) p.getDb();
        s.s = (byte) p.getS();
        s.l = (byte) p.getL();
        s.g = (byte) p.getG();
        s.avl = (byte) p.getAvl();
        s.unusable = (byte) p.getUnusable();
        return s;
    }

    static Dtable toProto(KvmDtable d) {
        return Dtable.newBuilder().setBase(d.base).setLimit(Short.toUnsignedInt(d.limit)).build();
    }

    private static KvmDtable fill(KvmDtable d, Dtable p) {
        d.base = p.getBase();
        d.limit = (short) p.getLimit();
        return d;
    }
}
