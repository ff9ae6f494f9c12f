/* Real-kernel page-state probe for the page model (models/kernel).
 *
 * Reads a script on stdin, one command per line, and after each command prints one JSON line
 * with the command's result, the minor faults it took (getrusage) and, per region, one letter
 * per page read from /proc/self/pagemap and /proc/kpageflags (root only):
 *   N not present   Z the shared zero page   R private anonymous, swap-backed
 *   L anonymous, not swap-backed (lazily freed)   S shmem / file page   W swapped
 * Commands (sizes in pages):
 *   map NAME PAGES SHARED(0|1)     touch NAME FIRST N r|w     madv NAME FIRST N ADVICE
 *   press N                        limit PAGES  (cgroup limit = usage now + PAGES; argv[1] = cgroup dir)
 * Regions are 64 KiB aligned (fault-around windows line up with the model's), MADV_NOHUGEPAGE,
 * and followed by a PROT_NONE guard page so that neighbours never merge (FACTS E5).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define PG 4096L
#define MAXR 16
static int pm_fd, kf_fd;
static const char *cg = "-";
static struct { char name[64]; char *base; long n; } R[MAXR];
static int nr;

static long minflt(void) { struct rusage r; getrusage(RUSAGE_SELF, &r); return r.ru_minflt; }
static char pstate(char *addr) {
    uint64_t e = 0, f = 0;
    if (pread(pm_fd, &e, 8, ((uintptr_t)addr / PG) * 8) != 8) return '?';
    if (e >> 62 & 1) return 'W';
    if (!(e >> 63 & 1)) return 'N';
    if (pread(kf_fd, &f, 8, (e & ((1ULL << 55) - 1)) * 8) != 8) return '?';
    if (f >> 24 & 1) return 'Z';          /* KPF_ZERO_PAGE */
    if (!(f >> 12 & 1)) return 'S';       /* !KPF_ANON: shmem */
    return (f >> 14 & 1) ? 'R' : 'L';     /* KPF_SWAPBACKED */
}
static long cgread(const char *file) {
    char p[512]; long v = -1; snprintf(p, sizeof p, "%s/%s", cg, file);
    FILE *fp = fopen(p, "r"); if (!fp) return -1; if (fscanf(fp, "%ld", &v) != 1) v = -1; fclose(fp); return v;
}
static int cgwrite(const char *file, long v) {
    char p[512]; snprintf(p, sizeof p, "%s/%s", cg, file);
    FILE *fp = fopen(p, "w"); if (!fp) return -1; fprintf(fp, "%ld", v); return fclose(fp);
}
static int find(const char *name) { for (int i = 0; i < nr; i++) if (!strcmp(R[i].name, name)) return i; return -1; }
static char *map_aligned(long n, int shared) {
    long span = (n + 16 + 1) * PG;
    char *raw = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *a = (char *)(((uintptr_t)raw + 16 * PG - 1) & ~(uintptr_t)(16 * PG - 1));
    if (mmap(a, n * PG, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_ANONYMOUS | (shared ? MAP_SHARED : MAP_PRIVATE), -1, 0) == MAP_FAILED)
        return NULL;
    madvise(a, n * PG, MADV_NOHUGEPAGE);
    return a;   /* a + n*PG stays PROT_NONE: the guard */
}
int main(int argc, char **argv) {
    if (argc > 1) cg = argv[1];
    pm_fd = open("/proc/self/pagemap", O_RDONLY);
    kf_fd = open("/proc/kpageflags", O_RDONLY);
    if (pm_fd < 0 || kf_fd < 0) { printf("{\"fatal\": \"cannot open pagemap/kpageflags (root needed)\"}\n"); return 2; }
    char line[512], cmd[16], name[64], acc[4];
    long a, b, c;
    printf("{\"ready\": 1}\n"); fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        long f0 = minflt(); const char *res = "ok";
        if (sscanf(line, "%15s", cmd) != 1) continue;
        if (!strcmp(cmd, "map") && sscanf(line, "%*s %63s %ld %ld", name, &a, &b) == 3) {
            char *p = map_aligned(a, (int)b);
            if (!p || nr == MAXR) res = "mapfail";
            else { strcpy(R[nr].name, name); R[nr].base = p; R[nr].n = a; nr++; }
        } else if (!strcmp(cmd, "touch") && sscanf(line, "%*s %63s %ld %ld %3s", name, &a, &b, acc) == 4) {
            int i = find(name); volatile char sink = 0;
            for (long p = a; p < a + b; p++) {
                if (acc[0] == 'w') R[i].base[p * PG] = 1; else sink += R[i].base[p * PG];
            }
            (void)sink;
        } else if (!strcmp(cmd, "madv") && sscanf(line, "%*s %63s %ld %ld %ld", name, &a, &b, &c) == 4) {
            int i = find(name);
            if (madvise(R[i].base + a * PG, b * PG, (int)c)) res = errno == EINVAL ? "EINVAL" : errno == ENOMEM ? "ENOMEM" : "EOTHER";
        } else if (!strcmp(cmd, "press") && sscanf(line, "%*s %ld", &a) == 1) {
            char *p = map_aligned(a, 0);
            for (long q = 0; q < a; q++) p[q * PG] = 1;
        } else if (!strcmp(cmd, "limit") && sscanf(line, "%*s %ld", &a) == 1) {
            long use = cgread("memory.usage_in_bytes");
            if (use < 0 || cgwrite("memory.limit_in_bytes", use + a * PG)) res = "nolimit";
        } else res = "badcmd";
        long df = minflt() - f0;
        printf("{\"cmd\": \"%s\", \"result\": \"%s\", \"faults\": %ld, \"states\": {", cmd, res, df);
        for (int i = 0; i < nr; i++) {
            printf("%s\"%s\": \"", i ? ", " : "", R[i].name);
            for (long p = 0; p < R[i].n; p++) putchar(pstate(R[i].base + p * PG));
            putchar('"');
        }
        printf("}}\n"); fflush(stdout);
    }
    return 0;
}
