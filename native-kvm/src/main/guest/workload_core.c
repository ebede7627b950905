/*
 * Ferry's guest workload core, shared by the KVM guest (ring 3) and the process backend (host code).
 *
 * It fills a working set, then keeps writing pages at a paced rate (or as fast as it can) in a
 * sequential, random or hot/cold order. Every page it writes is self-describing: word i of page p
 * at generation g is page_word(p, g, i), and g is kept in a per-page generation table in guest
 * memory. So the guest can check its whole working set on request and count the wrong pages:
 * that is how every migration test proves no page was lost or stale.
 *
 * Exits to the VMM are rare on purpose (~26 us each in the KVM guest): one `in` per report period,
 * which the VMM timestamps (the guest's own view of pauses) and answers with a pending command.
 *
 * The workload is a step function over a state block in guest memory (abi.h, V_*): a step loads
 * the block, runs until it needs port I/O or is asked to stop, and stores the block back. So the
 * loop runs on locals (as fast as a plain loop), yet between two steps guest memory holds all of
 * the workload's state: a process-backend vCPU paused between steps is captured by memory alone.
 *
 * In a host thread a bad address crashes the JVM, so every value read from guest memory that
 * ends up in an address is range-checked first; a bad block makes the step return WL_STEP_BAD.
 * Each field is read once into a local, so a concurrent writer cannot change it after its check.
 */
#include "abi.h"
#include "workload_core.h"

typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned char u8;

#define PAGE_SIZE 4096UL
#define WORDS_PER_PAGE (PAGE_SIZE / 8)

static inline u64 rdtsc(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

unsigned long ferry_rdtsc(void)
{
    return rdtsc();
}

/* splitmix64 finaliser: a good 64-bit mix, cheap enough to run per page. */
static inline u64 mix64(u64 z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
    return z ^ (z >> 31);
}

/* Word i of page p at generation g. Odd, so never zero: zero-page elision cannot cheat. */
static inline u64 page_word(u64 base, u64 i)
{
    return (base + i * 0x9e3779b97f4a7c15UL) | 1;
}

/* With a word stride s > 1 only every s-th word carries data and the rest are 0, so pages compress (about s:1). */
static inline u64 strided_word(u64 base, u64 i, u64 stride_mask)
{
    return (i & stride_mask) == 0 ? page_word(base, i) : 0;
}

static inline u64 page_base(u64 p, u64 g)
{
    return mix64((p << 32) ^ g ^ 0x46455252UL);
}

static inline u64 xorshift64(u64 *s)
{
    u64 x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* One vCPU's workload during a step: validated parameters, then the loop state (a copy of its state block). */
struct wl {
    volatile u64 *pages;     /* working set base (host address) */
    volatile u32 *gen;       /* generation per page, indexed like pages */
    volatile u64 *status;    /* this vCPU's status block */
    volatile u64 *vs;        /* this vCPU's state block */
    u64 cpu, ncpus, total;   /* total: pages in the whole working set */
    u64 first, npages;       /* this vCPU's slice [first, first + npages) */
    u64 tsc_per_page, tsc_per_report, quiet, pattern, hot_pages, hot_permille, max_backlog, seed;
    u64 stride_mask;         /* word stride - 1 */
    u64 tsc_offset;

    u64 stage, resume, fill_pos, seq, rng, paced_from, owed_written, next_report, check_pos, check_wrong;
    u64 con_len, con_pos;
};

#define STATUS(off) (w->status[(off) / 8])
#define VS(off)     (w->vs[(off) / 8])

static inline u64 clock_now(const struct wl *w)
{
    return rdtsc() + w->tsc_offset;
}

static inline int stop_requested(const volatile int *stop)
{
    return stop && *stop;
}

/* Reads and checks the parameter block; 0 if the guest cannot run with it. */
static int load_params(struct wl *w, u64 base, u64 mem_bytes, u64 cpu)
{
    /* The low area (parameters, status and state blocks) must be inside guest memory. */
    if (cpu >= ABI_MAX_VCPUS || mem_bytes < ABI_VCPU_STATE_GPA + ABI_MAX_VCPUS * ABI_VCPU_STATE_STRIDE)
        return 0;
    const volatile u64 *pb = (const volatile u64 *)(base + ABI_PARAMS_GPA);
#define PARAM(off) (pb[(off) / 8])
    if (PARAM(P_MAGIC) != ABI_MAGIC || PARAM(P_VERSION) != ABI_VERSION)
        return 0;
    u64 ncpus = PARAM(P_VCPUS);
    u64 total = PARAM(P_WS_PAGES);
    u64 ws_base = PARAM(P_WS_BASE);
    u64 gen_base = PARAM(P_GEN_BASE);
    /* Written so that nothing overflows: total <= mem_bytes / PAGE_SIZE bounds both products. */
    if (ncpus == 0 || ncpus > ABI_MAX_VCPUS || cpu >= ncpus || total < ncpus || total > mem_bytes / PAGE_SIZE)
        return 0;
    if (ws_base % PAGE_SIZE != 0 || ws_base > mem_bytes - total * PAGE_SIZE)
        return 0;
    if (gen_base % 4 != 0 || gen_base > mem_bytes - total * 4)
        return 0;
    w->pages = (volatile u64 *)(base + ws_base);
    w->gen = (volatile u32 *)(base + gen_base);
    w->status = (volatile u64 *)(base + ABI_STATUS_GPA + cpu * ABI_STATUS_STRIDE);
    w->vs = (volatile u64 *)(base + ABI_VCPU_STATE_GPA + cpu * ABI_VCPU_STATE_STRIDE);
    w->cpu = cpu;
    w->ncpus = ncpus;
    w->total = total;
    w->first = cpu * total / ncpus;
    w->npages = (cpu + 1) * total / ncpus - w->first;
    w->tsc_per_page = PARAM(P_TSC_PER_PAGE);
    w->tsc_per_report = PARAM(P_TSC_PER_REPORT);
    w->quiet = PARAM(P_QUIET);
    w->pattern = PARAM(P_PATTERN);
    /* hot set: the first P_HOT_PAGES of each slice (at least one page, at most the slice) */
    u64 hot_pages = PARAM(P_HOT_PAGES) / ncpus;
    w->hot_pages = hot_pages == 0 ? 1 : hot_pages > w->npages ? w->npages : hot_pages;
    w->hot_permille = PARAM(P_HOT_PERMILLE);
    w->max_backlog = PARAM(P_MAX_BACKLOG);
    w->seed = PARAM(P_SEED);
    u64 stride = PARAM(P_WORD_STRIDE);
    if (stride == 0) /* parameter blocks written before the stride existed */
        stride = 1;
    if (stride > WORDS_PER_PAGE || (stride & (stride - 1)) != 0)
        return 0;
    w->stride_mask = stride - 1;
#undef PARAM
    return 1;
}

/* Reads and checks the state block; 0 if it is out of range. A block not started needs no more. */
static int load_state(struct wl *w)
{
    u64 end = w->first + w->npages;
    w->stage = VS(V_STAGE);
    if (w->stage > ABI_STAGE_RUNNING)
        return 0;
    u64 pending = VS(V_IO_PENDING);
    if (pending > 1)
        return 0;
    if (pending) {
        /* The caller performs this request as it stands: it must be a real port access. */
        u64 port = VS(V_IO_PORT), size = VS(V_IO_SIZE), dir = VS(V_IO_DIR);
        if (port > 0xffff || (size != 1 && size != 2 && size != 4) || dir > ABI_IO_IN)
            return 0;
    }
    if (w->stage == ABI_STAGE_NEW)
        return 1;
    w->resume = VS(V_RESUME);
    w->fill_pos = VS(V_FILL_POS);
    w->seq = VS(V_SEQ);
    w->rng = VS(V_RNG);
    w->paced_from = VS(V_PACED_FROM);
    w->owed_written = VS(V_OWED_WRITTEN);
    w->next_report = VS(V_NEXT_REPORT);
    w->check_pos = VS(V_CHECK_POS);
    w->check_wrong = VS(V_CHECK_WRONG);
    w->con_len = VS(V_CON_LEN);
    w->con_pos = VS(V_CON_POS);
    return w->resume < ABI_RESUME_COUNT && w->fill_pos >= w->first && w->fill_pos <= end && w->seq < w->npages
           && w->rng != 0 && w->check_pos >= w->first && w->check_pos <= end && w->con_len <= ABI_CON_MAX
           && w->con_pos <= w->con_len;
}

static void save_state(struct wl *w)
{
    VS(V_STAGE) = w->stage;
    VS(V_RESUME) = w->resume;
    VS(V_FILL_POS) = w->fill_pos;
    VS(V_SEQ) = w->seq;
    VS(V_RNG) = w->rng;
    VS(V_PACED_FROM) = w->paced_from;
    VS(V_OWED_WRITTEN) = w->owed_written;
    VS(V_NEXT_REPORT) = w->next_report;
    VS(V_CHECK_POS) = w->check_pos;
    VS(V_CHECK_WRONG) = w->check_wrong;
    VS(V_CON_LEN) = w->con_len;
    VS(V_CON_POS) = w->con_pos;
}

/* Ends the step with a port access for the caller to make; the step after it continues at `resume`. */
static long request_io(struct wl *w, u64 port, u64 size, u64 dir, u64 value, u64 resume)
{
    w->resume = resume;
    save_state(w);
    VS(V_IO_PORT) = port;
    VS(V_IO_SIZE) = size;
    VS(V_IO_DIR) = dir;
    VS(V_IO_VALUE) = value;
    VS(V_IO_PENDING) = 1; /* last: a pending request is always complete */
    return WL_STEP_IO;
}

static long stopped(struct wl *w)
{
    save_state(w);
    return WL_STEP_STOPPED;
}

/* Console text, printed one outb per step by ABI_RESUME_CONSOLE (one exit per byte, as ever). */
static void con_puts(struct wl *w, const char *s)
{
    volatile u8 *buf = (volatile u8 *)w->vs + V_CON_BUF;
    for (; *s && w->con_len < ABI_CON_MAX; s++)
        buf[w->con_len++] = (u8)*s;
}

static void con_put_u64(struct wl *w, u64 v)
{
    char digits[21];
    int i = 20;
    digits[i] = 0;
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    con_puts(w, &digits[i]);
}

static void con_reset(struct wl *w)
{
    w->con_len = 0;
    w->con_pos = 0;
}

/* p is an index into the whole working set. The generation goes first: see MicroVmTest's dirty-log test. */
static inline void write_page(struct wl *w, u64 p)
{
    u64 g = w->gen[p] + 1;
    w->gen[p] = (u32)g;
    u64 base = page_base(p, (u32)g);
    volatile u64 *pw = w->pages + p * WORDS_PER_PAGE;
    u64 mask = w->stride_mask;
    if (mask == 0) {
        for (u64 i = 0; i < WORDS_PER_PAGE; i++)
            pw[i] = page_word(base, i);
    } else {
        for (u64 i = 0; i < WORDS_PER_PAGE; i++)
            pw[i] = strided_word(base, i, mask);
    }
    STATUS(S_PAGES_WRITTEN) += 1;
}

/* One progress report: the VMM timestamps the `in` and answers with a pending command. */
static long report(struct wl *w)
{
    STATUS(S_REPORTS) += 1;
    return request_io(w, ABI_PORT_PROGRESS, 4, ABI_IO_IN, 0, ABI_RESUME_COMMAND);
}

/* Checks this vCPU's slice from V_CHECK_POS on; stops between pages when asked. */
static long self_check(struct wl *w, const volatile int *stop)
{
    u64 end = w->first + w->npages;
    for (; w->check_pos < end; w->check_pos++) {
        if (stop_requested(stop))
            return stopped(w);
        u64 p = w->check_pos;
        u32 g = w->gen[p];
        volatile u64 *pw = w->pages + p * WORDS_PER_PAGE;
        u64 bad = 0;
        if (g == 0) {
            for (u64 i = 0; i < WORDS_PER_PAGE; i++)
                bad |= pw[i];
        } else {
            u64 base = page_base(p, g);
            for (u64 i = 0; i < WORDS_PER_PAGE; i++)
                bad |= pw[i] ^ strided_word(base, i, w->stride_mask);
        }
        w->check_wrong += bad != 0;
    }
    u64 wrong = w->check_wrong;
    STATUS(S_LAST_WRONG) = wrong;
    STATUS(S_CHECKS) += 1;
    return request_io(w, ABI_PORT_RESULT, 4, ABI_IO_OUT, wrong > 0xffffffffUL ? 0xffffffffUL : wrong,
                      ABI_RESUME_AFTER_REPORT);
}

/* The first step: set up the loop state, announce the workload, print the banner on vCPU 0. */
static long start(struct wl *w)
{
    w->stage = ABI_STAGE_FILLING;
    w->fill_pos = w->first;
    w->seq = 0;
    w->rng = mix64(w->seed + w->cpu) | 1;
    w->paced_from = 0;
    w->owed_written = 0;
    w->next_report = 0;
    w->check_pos = w->first;
    w->check_wrong = 0;
    con_reset(w);
    if (w->cpu == 0) {
        con_puts(w, "ferry-guest: working set ");
        con_put_u64(w, w->total);
        con_puts(w, " pages on ");
        con_put_u64(w, w->ncpus);
        con_puts(w, " vcpus\n");
    }
    return request_io(w, ABI_PORT_EVENT, 4, ABI_IO_OUT, ABI_EVENT_STARTED,
                      w->cpu == 0 ? ABI_RESUME_CONSOLE : ABI_RESUME_ENTER);
}

/* A stage's loop starts once its console text is out (so its clocks start after the exits it took). */
static void enter_stage(struct wl *w)
{
    if (w->stage == ABI_STAGE_FILLING) {
        STATUS(S_PHASE) = 1;
        w->next_report = clock_now(w) + w->tsc_per_report;
    } else {
        w->seq = 0;
        w->paced_from = clock_now(w); /* page writes owed = (now - paced_from) / tsc_per_page */
        w->owed_written = 0;
    }
    w->resume = ABI_RESUME_LOOP;
}

/* Fill: every page gets generation 1 and non-zero content, at full speed. */
static long fill(struct wl *w, const volatile int *stop)
{
    u64 end = w->first + w->npages;
    w->resume = ABI_RESUME_LOOP;
    while (w->fill_pos < end) {
        if (stop_requested(stop))
            return stopped(w);
        u64 p = w->fill_pos++;
        write_page(w, p);
        STATUS(S_COUNTER) += 1;
        if ((p & 63) == 0) {
            u64 now = clock_now(w);
            if ((long)(now - w->next_report) >= 0) {
                w->next_report = now + w->tsc_per_report;
                return report(w);
            }
        }
    }
    STATUS(S_PHASE) = 2;
    w->stage = ABI_STAGE_RUNNING;
    con_reset(w);
    if (w->cpu == 0)
        con_puts(w, "ferry-guest: fill done\n");
    return request_io(w, ABI_PORT_EVENT, 4, ABI_IO_OUT, ABI_EVENT_FILL_DONE,
                      w->cpu == 0 ? ABI_RESUME_CONSOLE : ABI_RESUME_ENTER);
}

/* The endless loop after the fill: count, report when due, write a page when one is owed. */
static long run(struct wl *w, const volatile int *stop)
{
    u64 now;
    if (w->resume == ABI_RESUME_AFTER_REPORT) {
        /* The iteration that reported goes on to its page write, as it did before steps existed. */
        w->resume = ABI_RESUME_LOOP;
        now = clock_now(w);
        goto after_report;
    }
    for (;;) {
        if (stop_requested(stop))
            return stopped(w);
        STATUS(S_COUNTER) += 1;
        now = clock_now(w);
        if ((long)(now - w->next_report) >= 0) {
            w->next_report = now + w->tsc_per_report;
            return report(w);
        }
    after_report:
        if (w->quiet)
            continue;
        if (w->tsc_per_page) {
            u64 due = (now - w->paced_from) / w->tsc_per_page;
            if (due <= w->owed_written)
                continue;
            if (due - w->owed_written > w->max_backlog) {
                /* After a long pause, don't burst: owe at most max_backlog writes. */
                w->owed_written = due - w->max_backlog;
            }
            w->owed_written++;
        }
        u64 p;
        if (w->pattern == ABI_PATTERN_RANDOM) {
            p = w->first + xorshift64(&w->rng) % w->npages;
        } else if (w->pattern == ABI_PATTERN_HOT_COLD) {
            u64 r = xorshift64(&w->rng);
            p = w->first + ((r % 1000 < w->hot_permille) ? (r >> 10) % w->hot_pages : (r >> 10) % w->npages);
        } else {
            p = w->first + w->seq;
            w->seq = w->seq + 1 == w->npages ? 0 : w->seq + 1;
        }
        write_page(w, p);
    }
}

long ferry_workload_step(unsigned long base, unsigned long mem_bytes, unsigned long cpu, long tsc_offset,
                         const volatile int *stop)
{
    struct wl ctx;
    struct wl *w = &ctx;
    if (!load_params(w, base, mem_bytes, cpu) || !load_state(w))
        return WL_STEP_BAD;
    w->tsc_offset = (u64)tsc_offset;
    if (VS(V_IO_PENDING))
        return WL_STEP_IO; /* the last request is still owed */
    if (w->stage == ABI_STAGE_NEW)
        return start(w);
    for (;;) {
        switch (w->resume) {
        case ABI_RESUME_CONSOLE:
            if (w->con_pos < w->con_len) { /* both checked by load_state */
                u8 c = ((volatile u8 *)w->vs + V_CON_BUF)[w->con_pos++];
                return request_io(w, ABI_PORT_COM1, 1, ABI_IO_OUT, c, ABI_RESUME_CONSOLE);
            }
            enter_stage(w);
            break;
        case ABI_RESUME_ENTER:
            enter_stage(w);
            break;
        case ABI_RESUME_COMMAND:
            if ((u32)VS(V_IO_VALUE) == ABI_CMD_SELF_CHECK) {
                w->check_pos = w->first;
                w->check_wrong = 0;
                w->resume = ABI_RESUME_CHECK;
            } else {
                w->resume = ABI_RESUME_AFTER_REPORT;
            }
            break;
        case ABI_RESUME_CHECK:
            return self_check(w, stop);
        default: /* ABI_RESUME_LOOP, ABI_RESUME_AFTER_REPORT */
            return w->stage == ABI_STAGE_FILLING ? fill(w, stop) : run(w, stop);
        }
    }
}
