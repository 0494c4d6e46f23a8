/* mhm-heartbeat DEVICE INTERVAL_MS
 *
 * Writes "HB <seq> <guest_monotonic_ns>\n" to DEVICE every INTERVAL_MS
 * milliseconds, forever, on an absolute CLOCK_MONOTONIC schedule.  A tty is
 * switched to raw mode so the host sees the bytes unchanged.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long interval_ms;
    unsigned long long seq = 0, now_ns;
    struct timespec next, now;
    struct termios tio;
    char line[96];
    int fd, len;

    if (argc != 3) {
        fprintf(stderr, "usage: mhm-heartbeat DEVICE INTERVAL_MS\n");
        return 2;
    }
    interval_ms = strtol(argv[2], NULL, 10);
    if (interval_ms <= 0) {
        fprintf(stderr, "mhm-heartbeat: INTERVAL_MS must be positive\n");
        return 2;
    }
    fd = open(argv[1], O_WRONLY | O_NOCTTY);
    if (fd < 0) {
        fprintf(stderr, "mhm-heartbeat: %s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    if (isatty(fd) && tcgetattr(fd, &tio) == 0) {
        cfmakeraw(&tio);
        cfsetospeed(&tio, B115200);
        tcsetattr(fd, TCSANOW, &tio);
    }
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        now_ns = (unsigned long long)now.tv_sec * 1000000000ULL
                 + (unsigned long long)now.tv_nsec;
        len = snprintf(line, sizeof(line), "HB %llu %llu\n", seq++, now_ns);
        if (write(fd, line, (size_t)len) < 0 && errno != EINTR && errno != EAGAIN) {
            fprintf(stderr, "mhm-heartbeat: write: %s\n", strerror(errno));
            return 1;
        }
        next.tv_nsec += (interval_ms % 1000) * 1000000L;
        next.tv_sec += interval_ms / 1000 + next.tv_nsec / 1000000000L;
        next.tv_nsec %= 1000000000L;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
            ;
    }
}
