/* malloc_probe: replay a malloc/free sequence on the real glibc and report,
 * after every operation, what the kernel and the allocator see.
 *
 * Input (stdin), one operation per line, sizes in bytes:
 *     malloc ID SIZE [nowrite] e.g. "malloc A 65536"; by default every byte
 *                             asked for is then written (memset non-zero)
 *     free ID
 *     malloc_trim PAD
 *     mallopt PARAM VALUE     PARAM = M_MMAP_THRESHOLD | M_TRIM_THRESHOLD |
 *                                     M_TOP_PAD | M_MMAP_MAX
 * Output (stdout), one line of key=value pairs per operation, preceded by a
 * "ready" line.  Everything the probe itself needs lives in static buffers and
 * is touched before the first operation, and stdio is never used, so the only
 * heap and mapping activity between two output lines is the operation's own.
 * When run under "strace -e trace=...,write", the write(1, ...) of each line
 * marks where one operation's system calls end.
 *
 * Main arena only: the probe is single-threaded.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_IDS 10000   /* = MAX_OPS in models/malloc/sequence.py: every op could name a new id */
#define MAX_INPUT (1 << 20)
#define SMAPS_BUF (4 << 20)

static char input[MAX_INPUT];
static char smaps[SMAPS_BUF];
static char out[4096];

static struct { char id[64]; void *ptr; size_t size; int live; } blocks[MAX_IDS];
static int nblocks;

static char *initial_brk;
static long baseline_anon_kb;

static void die(const char *msg, const char *detail)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "error=%s detail=%s\n", msg, detail ? detail : "");
    if (write(1, buf, (size_t) n) < 0) _exit(3);
    _exit(2);
}

static void emit(const char *line)
{
    size_t len = strlen(line), off = 0;
    while (off < len) {
        ssize_t w = write(1, line + off, len - off);
        if (w < 0) { if (errno == EINTR) continue; _exit(3); }
        off += (size_t) w;
    }
}

/* Read /proc/self/smaps into the static buffer (open/read: no stdio, no malloc). */
static size_t read_smaps(void)
{
    int fd = open("/proc/self/smaps", O_RDONLY);
    if (fd < 0) die("open_smaps", strerror(errno));
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, smaps + len, SMAPS_BUF - 1 - len);
        if (r < 0) { if (errno == EINTR) continue; die("read_smaps", strerror(errno)); }
        if (r == 0) break;
        len += (size_t) r;
        if (len >= SMAPS_BUF - 1) die("smaps_too_large", "");
    }
    close(fd);
    smaps[len] = 0;
    return len;
}

/* Sum the Rss of the [heap] mapping and of every anonymous mapping without a
 * name (the mmapped chunks live there; [stack], [vdso] etc. are excluded). */
static void measure(long *heap_rss_kb, long *anon_rss_kb)
{
    read_smaps();
    long heap = 0, anon = 0;
    int kind = 0;                       /* 0 other, 1 heap, 2 anonymous */
    for (char *line = smaps; *line; ) {
        char *eol = strchr(line, '\n');
        if (eol) *eol = 0;
        /* A mapping header starts with "start-end perms offset dev inode [name]". */
        char *dash = strchr(line, '-');
        char *sp = strchr(line, ' ');
        int is_header = dash && sp && dash < sp &&
            ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f'));
        if (is_header) {
            /* Skip five fields to reach the optional name. */
            char *p = line;
            for (int f = 0; f < 5 && p; f++) {
                p = strchr(p, ' ');
                if (p) while (*p == ' ') p++;
            }
            if (!p || *p == 0) kind = 2;
            else if (strcmp(p, "[heap]") == 0) kind = 1;
            else kind = 0;
        } else if (strncmp(line, "Rss:", 4) == 0) {
            long kb = strtol(line + 4, NULL, 10);
            if (kind == 1) heap += kb;
            else if (kind == 2) anon += kb;
        }
        if (!eol) break;
        line = eol + 1;
    }
    *heap_rss_kb = heap;
    *anon_rss_kb = anon;
}

static int find_id(const char *id)
{
    for (int i = 0; i < nblocks; i++)
        if (strcmp(blocks[i].id, id) == 0) return i;
    return -1;
}

static long op_faults;       /* minor faults taken by the operation itself (not by the report) */

static long minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

static void report(int step, const char *op, const char *id, void *ptr, int result)
{
    long heap_rss, anon_rss;
    measure(&heap_rss, &anon_rss);
    struct mallinfo2 mi = mallinfo2();
    char *brk_now = sbrk(0);
    long ptr_off = -1, mmapped = -1, chunk = -1;
    if (ptr) {
        /* The chunk's size word sits just before the user pointer; bit 1 is IS_MMAPPED. */
        size_t head = ((size_t *) ptr)[-1];
        mmapped = (head & 2) ? 1 : 0;
        chunk = (long) (head & ~(size_t) 7);
        ptr_off = mmapped ? -1 : (long) ((char *) ptr - initial_brk);
    }
    int n = snprintf(out, sizeof out,
        "step=%d op=%s id=%s result=%d ptr_off=%ld mmapped=%ld chunk=%ld heap=%ld heap_rss_kb=%ld "
        "mmap_rss_kb=%ld faults=%ld arena=%zu ordblks=%zu smblks=%zu hblks=%zu hblkhd=%zu "
        "fsmblks=%zu uordblks=%zu fordblks=%zu keepcost=%zu\n",
        step, op, id ? id : "-", result, ptr_off, mmapped, chunk, (long) (brk_now - initial_brk),
        heap_rss, anon_rss - baseline_anon_kb, op_faults, mi.arena, mi.ordblks, mi.smblks, mi.hblks,
        mi.hblkhd, mi.fsmblks, mi.uordblks, mi.fordblks, mi.keepcost);
    if (n < 0 || (size_t) n >= sizeof out) die("output_overflow", op);
    emit(out);
}

static int param_of(const char *name)
{
    if (strcmp(name, "M_MMAP_THRESHOLD") == 0) return M_MMAP_THRESHOLD;
    if (strcmp(name, "M_TRIM_THRESHOLD") == 0) return M_TRIM_THRESHOLD;
    if (strcmp(name, "M_TOP_PAD") == 0) return M_TOP_PAD;
    if (strcmp(name, "M_MMAP_MAX") == 0) return M_MMAP_MAX;
    die("unknown_mallopt_param", name);
    return 0;
}

int main(void)
{
    /* 4 KiB pages only, whatever the machine's THP mode: the model counts base
     * pages, and with THP "always" a large heap or mapping could be backed by
     * 2 MiB pages (one fault, 512 pages of Rss). */
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0) die("prctl_thp_disable", strerror(errno));

    /* Pre-fault the probe's own buffers so their pages are counted in the baseline. */
    memset(smaps, 1, sizeof smaps);
    memset(out, 1, sizeof out);
    memset(blocks, 0, sizeof blocks);

    size_t len = 0;
    for (;;) {
        ssize_t r = read(0, input + len, MAX_INPUT - 1 - len);
        if (r < 0) { if (errno == EINTR) continue; die("read_stdin", strerror(errno)); }
        if (r == 0) break;
        len += (size_t) r;
        if (len >= MAX_INPUT - 1) die("input_too_large", "");
    }
    input[len] = 0;

    initial_brk = sbrk(0);
    long heap_rss;
    measure(&heap_rss, &baseline_anon_kb);
    measure(&heap_rss, &baseline_anon_kb);   /* second pass: first one may fault in smaps[] tail */
    snprintf(out, sizeof out, "ready initial_brk_page_offset=%ld heap_rss_kb=%ld arena=%zu\n",
                     (long) ((uintptr_t) initial_brk & 4095), heap_rss, mallinfo2().arena);
    emit(out);

    int step = 0;
    for (char *line = input; *line; ) {
        char *eol = strchr(line, '\n');
        if (eol) *eol = 0;
        char *save = NULL;
        char *op = strtok_r(line, " \t\r", &save);
        if (op && op[0] != '#') {
            long faults_before = minflt();
            char *a = strtok_r(NULL, " \t\r", &save);
            char *b = strtok_r(NULL, " \t\r", &save);
            char *c = strtok_r(NULL, " \t\r", &save);
            if (strcmp(op, "malloc") == 0) {
                if (!a || !b) die("malloc_needs_id_and_size", "");
                if (find_id(a) >= 0 && blocks[find_id(a)].live) die("id_already_live", a);
                int i = find_id(a);
                if (i < 0) {
                    if (nblocks == MAX_IDS) die("too_many_ids", a);
                    i = nblocks++;
                    if (strlen(a) >= sizeof blocks[i].id) die("id_too_long", a);
                    strcpy(blocks[i].id, a);
                }
                size_t size = strtoull(b, NULL, 10);
                void *p = malloc(size);
                if (!p) die("malloc_failed", a);
                if (!(c && strcmp(c, "nowrite") == 0))
                    memset(p, 0xA5, size);   /* the program writes what it asked for */
                blocks[i].ptr = p; blocks[i].size = size; blocks[i].live = 1;
                op_faults = minflt() - faults_before;
                report(step, op, a, p, 1);
            } else if (strcmp(op, "free") == 0) {
                int i = a ? find_id(a) : -1;
                if (i < 0 || !blocks[i].live) die("free_of_unknown_id", a);
                free(blocks[i].ptr);
                blocks[i].live = 0;
                op_faults = minflt() - faults_before;
                report(step, op, a, NULL, 1);
            } else if (strcmp(op, "malloc_trim") == 0) {
                if (!a) die("malloc_trim_needs_pad", "");
                int released = malloc_trim(strtoull(a, NULL, 10));
                op_faults = minflt() - faults_before;
                report(step, op, "-", NULL, released);
            } else if (strcmp(op, "mallopt") == 0) {
                if (!a || !b) die("mallopt_needs_param_and_value", "");
                /* mallopt returns 0 for a refused value (e.g. a threshold above 32 MiB). */
                int ok = mallopt(param_of(a), (int) strtol(b, NULL, 10));
                op_faults = minflt() - faults_before;
                report(step, op, a, NULL, ok);
            } else {
                die("unknown_op", op);
            }
            step++;
        }
        if (!eol) break;
        line = eol + 1;
    }
    emit("done\n");
    return 0;
}
