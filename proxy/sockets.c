/*
 * sockets.c - listening sockets, socket options, and addresses in words.
 * (Reads and writes with deadlines are tls/'s streams; heads and bodies
 * are http/'s.)
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void set_nodelay(int fd)
{
    int one = 1;
    /* Without it a small response waits ~40 ms for the peer's delayed ACK.
     * Failure only costs latency, so it is not an error. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void format_sockaddr(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(buf, len, "?");
    }
}

int listen_socket(const struct sockaddr_storage *addr, socklen_t len, const char *text,
                  const char *what)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    /* SO_REUSEADDR lets a restart bind its port while old connections sit in
     * TIME_WAIT; with port 0 there is nothing to rebind, and Linux may then
     * hand out a port another SO_REUSEADDR listener still holds */
    bool fixed_port = addr->ss_family != AF_UNIX &&
                      ((const struct sockaddr_in *)addr)->sin_port != 0; /* same offset in v6 */
    if (fd < 0 ||
        (fixed_port && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) ||
        bind(fd, (const struct sockaddr *)addr, len) != 0 || listen(fd, SOMAXCONN) != 0) {
        log_msg(LOGL_ERROR, "server", "cannot listen on %s (%s): %s", text, what, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char shown[128];
    snprintf(shown, sizeof(shown), "%s", text);
    if (addr->ss_family != AF_UNIX) {
        set_nodelay(fd); /* accepted sockets inherit it: one syscall less per connection */
        struct sockaddr_storage bound;
        socklen_t blen = sizeof(bound);
        if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
            format_sockaddr((struct sockaddr *)&bound, shown, sizeof(shown));
    }
    if (strcmp(what, "proxy") == 0)
        log_msg(LOGL_INFO, "server", "listening on %s", shown);
    else
        log_msg(LOGL_INFO, "server", "%s endpoint on %s", what, shown);
    return fd;
}
