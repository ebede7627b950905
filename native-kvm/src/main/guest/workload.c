/*
 * Ferry's guest workload: runs in ring 3, natively on this host.
 *
 * It fills a working set, then keeps writing pages at a paced rate (or as fast as it can) in a
 * sequential, random or hot/cold order. Every page it writes is self-describing: word i of page p
 * at generation g is page_word(p, g, i), and g is kept in a per-page generation table in guest
 * memory. So the guest can check its whole working set on request and count the wrong pages:
 * that is how every migration test proves no page was lost or stale.
 *
 * Exits to the VMM are rare on purpose (~26 us each here): one `in` per report period, which the
 * VMM timestamps (the guest's own view of pauses) and answers with a pending command.
 */
#include "abi.h"

typedef unsigned long u64;
typedef unsigned int u32;

#define PAGE_SIZE 4096UL
#define WORDS_PER_PAGE (PAGE_SIZE / 8)

#define PARAM(off)  (*(volatile u64 *)(ABI_PARAMS_GPA + (off)))
#define STATUS(off) (*(volatile u64 *)(ws->status + (off)))

static inline u64 rdtsc(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

static inline u32 inl(unsigned short port)
{
    u32 v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline void outl(unsigned short port, u32 v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outb(unsigned short port, unsigned char v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static void serial_puts(const char *s)
{
    for (; *s; s++)
        outb(ABI_PORT_COM1, (unsigned char)*s);
}

static void serial_put_u64(u64 v)
{
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    serial_puts(&buf[i]);
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

static inline u64 page_base(u64 p, u64 g)
{
    return mix64((p << 32) ^ g ^ 0x46455252UL);
}

/* What one vCPU works on: its slice [first, first + npages) of the working set. */
struct ws {
    volatile u64 *pages;     /* working set base */
    volatile u32 *gen;       /* generation per page, indexed like pages */
    u64 first;
    u64 npages;
    u64 status;              /* this vCPU's status block */
};

/* p is an index into the whole working set. */
static void write_page(struct ws *ws, u64 p)
{
    u64 g = ws->gen[p] + 1;
    ws->gen[p] = (u32)g;
    u64 base = page_base(p, (u32)g);
    volatile u64 *w = ws->pages + p * WORDS_PER_PAGE;
    for (u64 i = 0; i < WORDS_PER_PAGE; i++)
        w[i] = page_word(base, i);
    STATUS(S_PAGES_WRITTEN) += 1;
}

static u64 self_check(struct ws *ws)
{
    u64 wrong = 0;
    for (u64 p = ws->first; p < ws->first + ws->npages; p++) {
        u32 g = ws->gen[p];
        volatile u64 *w = ws->pages + p * WORDS_PER_PAGE;
        u64 bad = 0;
        if (g == 0) {
            for (u64 i = 0; i < WORDS_PER_PAGE; i++)
                bad |= w[i];
        } else {
            u64 base = page_base(p, g);
            for (u64 i = 0; i < WORDS_PER_PAGE; i++)
                bad |= w[i] ^ page_word(base, i);
        }
        wrong += bad != 0;
    }
    return wrong;
}

/* One progress report: the VMM timestamps the exit and answers with a pending command. */
static void report(struct ws *ws)
{
    STATUS(S_REPORTS) += 1;
    u32 cmd = inl(ABI_PORT_PROGRESS);
    if (cmd == ABI_CMD_SELF_CHECK) {
        u64 wrong = self_check(ws);
        STATUS(S_LAST_WRONG) = wrong;
        STATUS(S_CHECKS) += 1;
        outl(ABI_PORT_RESULT, (u32)(wrong > 0xffffffffUL ? 0xffffffffUL : wrong));
    }
}

static inline u64 xorshift64(u64 *s)
{
    u64 x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Entered in ring 3 on every vCPU; the VMM passes the vCPU index in rdi. */
void workload_main(u64 cpu)
{
    u64 ncpus = PARAM(P_VCPUS);
    u64 total = PARAM(P_WS_PAGES);
    struct ws ws_ctx = { .status = ABI_STATUS_GPA + cpu * ABI_STATUS_STRIDE };
    struct ws *ws = &ws_ctx;
    if (PARAM(P_MAGIC) != ABI_MAGIC || PARAM(P_VERSION) != ABI_VERSION || ncpus == 0 || cpu >= ncpus
        || total < ncpus) {
        outl(ABI_PORT_EVENT, ABI_EVENT_BAD_PARAMS);
        for (;;)
            STATUS(S_COUNTER) += 1;
    }
    ws->pages = (volatile u64 *)PARAM(P_WS_BASE);
    ws->gen = (volatile u32 *)PARAM(P_GEN_BASE);
    ws->first = cpu * total / ncpus;
    ws->npages = (cpu + 1) * total / ncpus - ws->first;
    const u64 tsc_per_page = PARAM(P_TSC_PER_PAGE);
    const u64 tsc_per_report = PARAM(P_TSC_PER_REPORT);
    const u64 quiet = PARAM(P_QUIET);
    const u64 pattern = PARAM(P_PATTERN);
    /* hot set: the first P_HOT_PAGES of each slice (at least one page, at most the slice) */
    u64 hot_pages = PARAM(P_HOT_PAGES) / ncpus;
    hot_pages = hot_pages == 0 ? 1 : hot_pages > ws->npages ? ws->npages : hot_pages;
    const u64 hot_permille = PARAM(P_HOT_PERMILLE);
    const u64 max_backlog = PARAM(P_MAX_BACKLOG);
    u64 rng = mix64(PARAM(P_SEED) + cpu) | 1;

    outl(ABI_PORT_EVENT, ABI_EVENT_STARTED);
    if (cpu == 0) {
        serial_puts("ferry-guest: working set ");
        serial_put_u64(total);
        serial_puts(" pages on ");
        serial_put_u64(ncpus);
        serial_puts(" vcpus\n");
    }

    /* Fill: every page gets generation 1 and non-zero content, at full speed. */
    STATUS(S_PHASE) = 1;
    u64 next_report = rdtsc() + tsc_per_report;
    for (u64 p = ws->first; p < ws->first + ws->npages; p++) {
        write_page(ws, p);
        STATUS(S_COUNTER) += 1;
        if ((p & 63) == 0) {
            u64 now = rdtsc();
            if ((long)(now - next_report) >= 0) {
                next_report = now + tsc_per_report;
                report(ws);
            }
        }
    }
    STATUS(S_PHASE) = 2;
    outl(ABI_PORT_EVENT, ABI_EVENT_FILL_DONE);
    if (cpu == 0)
        serial_puts("ferry-guest: fill done\n");

    u64 seq = 0;
    u64 paced_from = rdtsc(); /* page writes owed = (now - paced_from) / tsc_per_page */
    u64 owed_written = 0;
    for (;;) {
        STATUS(S_COUNTER) += 1;
        u64 now = rdtsc();
        if ((long)(now - next_report) >= 0) {
            next_report = now + tsc_per_report;
            report(ws);
        }
        if (quiet)
            continue;
        if (tsc_per_page) {
            u64 due = (now - paced_from) / tsc_per_page;
            if (due <= owed_written)
                continue;
            if (due - owed_written > max_backlog) {
                /* After a long pause, don't burst: owe at most max_backlog writes. */
                owed_written = due - max_backlog;
            }
            owed_written++;
        }
        u64 p;
        if (pattern == ABI_PATTERN_RANDOM) {
            p = ws->first + xorshift64(&rng) % ws->npages;
        } else if (pattern == ABI_PATTERN_HOT_COLD) {
            u64 r = xorshift64(&rng);
            p = ws->first + ((r % 1000 < hot_permille) ? (r >> 10) % hot_pages : (r >> 10) % ws->npages);
        } else {
            p = ws->first + seq;
            seq = seq + 1 == ws->npages ? 0 : seq + 1;
        }
        write_page(ws, p);
    }
}
