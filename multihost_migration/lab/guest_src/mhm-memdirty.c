/* mhm-memdirty MIB [--selftest-corrupt]
 *
 * Allocates MIB MiB, touches every page, then increments one byte at offset 0
 * of every 4 KiB page, in page order, forever.  Invariant at any instant:
 * pages [0,k) hold c+1 and pages [k,n) hold c (mod 256), so the sequence of
 * per-page values has at most one place where the value drops by 1 and every
 * other neighbour pair is equal.
 *
 * On SIGUSR1 it stops, verifies the invariant, prints one line
 *   MEMCHECK OK pages=N passes=P
 *   MEMCHECK BAD pages=N bad=B first_bad_page=I
 * to stdout and to /run/mhm-memcheck.result, and exits 0 (OK) or 1 (BAD).
 * --selftest-corrupt damages one page just before verifying, to prove that
 * the checker detects a bad page.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
#define PID_FILE "/run/mhm-memdirty.pid"
#define RESULT_FILE "/run/mhm-memcheck.result"

static volatile sig_atomic_t stop_requested;

static void on_usr1(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int write_file_atomic(const char *path, const char *text)
{
    char tmp[256];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    if (fputs(text, f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        return -1;
    }
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

/* Count neighbour pairs that break the invariant; one drop by 1 is allowed. */
static unsigned long verify(const unsigned char *mem, unsigned long pages,
                            unsigned long *first_bad)
{
    unsigned long i, bad = 0;
    int drop_seen = 0;

    *first_bad = 0;
    for (i = 1; i < pages; i++) {
        unsigned char prev = mem[(i - 1) * PAGE], cur = mem[i * PAGE];
        if (cur == prev)
            continue;
        if (!drop_seen && (unsigned char)(prev - 1) == cur) {
            drop_seen = 1;
            continue;
        }
        if (bad == 0)
            *first_bad = i;
        bad++;
    }
    return bad;
}

int main(int argc, char **argv)
{
    unsigned long mib, pages, i, passes = 0, bad, first_bad;
    unsigned char *mem;
    char line[160], pidtext[32];
    int corrupt = 0;
    struct sigaction sa;

    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "--selftest-corrupt") != 0)) {
        fprintf(stderr, "usage: mhm-memdirty MIB [--selftest-corrupt]\n");
        return 2;
    }
    corrupt = argc == 3;
    mib = strtoul(argv[1], NULL, 10);
    if (mib == 0) {
        fprintf(stderr, "mhm-memdirty: MIB must be a positive integer\n");
        return 2;
    }
    pages = mib * (1024UL * 1024UL / PAGE);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0) {
        perror("mhm-memdirty: sigaction");
        return 2;
    }
    mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("mhm-memdirty: mmap");
        return 2;
    }
    memset(mem, 0, pages * PAGE);  /* touch every page */
    unlink(RESULT_FILE);
    snprintf(pidtext, sizeof(pidtext), "%ld\n", (long)getpid());
    if (write_file_atomic(PID_FILE, pidtext) != 0) {
        perror("mhm-memdirty: " PID_FILE);
        return 2;
    }
    printf("MEMDIRTY READY pages=%lu\n", pages);
    fflush(stdout);

    while (!stop_requested) {
        for (i = 0; i < pages && !stop_requested; i++)
            mem[i * PAGE]++;
        if (i == pages)
            passes++;
    }

    if (corrupt && pages > 2)
        mem[(pages / 2) * PAGE] += 128;
    bad = verify(mem, pages, &first_bad);
    if (bad == 0)
        snprintf(line, sizeof(line), "MEMCHECK OK pages=%lu passes=%lu\n", pages, passes);
    else
        snprintf(line, sizeof(line), "MEMCHECK BAD pages=%lu bad=%lu first_bad_page=%lu\n",
                 pages, bad, first_bad);
    fputs(line, stdout);
    fflush(stdout);
    if (write_file_atomic(RESULT_FILE, line) != 0)
        perror("mhm-memdirty: " RESULT_FILE);
    unlink(PID_FILE);
    return bad == 0 ? 0 : 1;
}
