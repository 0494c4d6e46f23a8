/* nohup for the tiny guest: Debian's busybox-static has no nohup applet,
 * and users' scenarios (the guide's `nohup dd ... &`) expect one.
 * Ignores SIGHUP, sends stdout to nohup.out when it is a terminal, runs ARGV. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: nohup COMMAND [ARG]...\n");
        return 125;
    }
    signal(SIGHUP, SIG_IGN);
    if (isatty(STDOUT_FILENO)) {
        int fd = open("nohup.out", O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            close(fd);
        }
    }
    if (isatty(STDERR_FILENO))
        dup2(STDOUT_FILENO, STDERR_FILENO);
    execvp(argv[1], argv + 1);
    fprintf(stderr, "nohup: %s: %s\n", argv[1], strerror(errno));
    return errno == ENOENT ? 127 : 126;
}
