/* mhm-memcheck [TIMEOUT_S]
 *
 * Asks the running mhm-memdirty (pid in /run/mhm-memdirty.pid) to stop and
 * verify its memory invariant, waits up to TIMEOUT_S seconds (default 30) for
 * /run/mhm-memcheck.result and prints it.  Exit 0 if OK, 1 if BAD, 2 on
 * error or timeout.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PID_FILE "/run/mhm-memdirty.pid"
#define RESULT_FILE "/run/mhm-memcheck.result"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double timeout = 30.0, deadline;
    long pid;
    char line[256];
    FILE *f;
    struct timespec pause = {0, 20 * 1000 * 1000};

    if (argc > 2) {
        fprintf(stderr, "usage: mhm-memcheck [TIMEOUT_S]\n");
        return 2;
    }
    if (argc == 2)
        timeout = strtod(argv[1], NULL);
    f = fopen(PID_FILE, "r");
    if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "MEMCHECK ERROR no mhm-memdirty pid in %s\n", PID_FILE);
        if (f != NULL)
            fclose(f);
        return 2;
    }
    fclose(f);
    unlink(RESULT_FILE);
    if (kill((pid_t)pid, SIGUSR1) != 0) {
        fprintf(stderr, "MEMCHECK ERROR kill %ld: %s\n", pid, strerror(errno));
        return 2;
    }
    deadline = now() + timeout;
    while (now() < deadline) {
        f = fopen(RESULT_FILE, "r");
        if (f != NULL) {
            if (fgets(line, sizeof(line), f) == NULL)
                line[0] = '\0';
            fclose(f);
            fputs(line, stdout);
            if (strncmp(line, "MEMCHECK OK", 11) == 0)
                return 0;
            if (strncmp(line, "MEMCHECK BAD", 12) == 0)
                return 1;
            fprintf(stderr, "MEMCHECK ERROR unexpected result line\n");
            return 2;
        }
        nanosleep(&pause, NULL);
    }
    fprintf(stderr, "MEMCHECK ERROR no result within %.1f s\n", timeout);
    return 2;
}
