/* mhm-netecho PORT
 *
 * The guest's echo service: every UDP datagram to PORT goes back to its
 * sender unchanged; every TCP connection to PORT gets back what it sends
 * (up to MAX_CLIENTS connections at once, one poll loop, no fork).  The
 * suite's network checks measure from outside the guest against it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 32

static int listen_on(int type, int port)
{
    struct sockaddr_in addr;
    int one = 1, fd = socket(AF_INET, type, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
        return -1;
    if (type == SOCK_STREAM && listen(fd, 16) < 0)
        return -1;
    return fd;
}

/* Write all of buf; 0 on success. */
static int write_all(int fd, const char *buf, ssize_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, (size_t)len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct pollfd fds[2 + MAX_CLIENTS];
    struct sockaddr_in peer;
    socklen_t peer_len;
    char buf[65536];
    int port, nfds = 2, i;
    ssize_t n;

    if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
        fprintf(stderr, "usage: mhm-netecho PORT\n");
        return 2;
    }
    fds[0].fd = listen_on(SOCK_DGRAM, port);
    fds[1].fd = listen_on(SOCK_STREAM, port);
    if (fds[0].fd < 0 || fds[1].fd < 0) {
        fprintf(stderr, "mhm-netecho: port %d: %s\n", port, strerror(errno));
        return 1;
    }
    fds[0].events = fds[1].events = POLLIN;
    for (;;) {
        if (poll(fds, (nfds_t)nfds, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (fds[0].revents & POLLIN) {
            peer_len = sizeof(peer);
            n = recvfrom(fds[0].fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &peer_len);
            if (n >= 0)
                sendto(fds[0].fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, peer_len);
        }
        if ((fds[1].revents & POLLIN) && nfds < 2 + MAX_CLIENTS) {
            int conn = accept(fds[1].fd, NULL, NULL);
            if (conn >= 0) {
                fds[nfds].fd = conn;
                fds[nfds].events = POLLIN;
                fds[nfds].revents = 0;
                nfds++;
            }
        }
        for (i = 2; i < nfds; i++) {
            if (!fds[i].revents)
                continue;
            n = read(fds[i].fd, buf, sizeof(buf));
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n <= 0 || write_all(fds[i].fd, buf, n) < 0) {
                close(fds[i].fd);
                fds[i] = fds[--nfds];
                i--;
            }
        }
    }
}
