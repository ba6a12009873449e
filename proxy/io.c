/*
 * io.c - socket I/O with deadlines.
 *
 * Every socket egressd holds is non-blocking; a worker blocks in poll(2)
 * with a timeout instead of in read or write, so that no wait is without a
 * deadline and a slow peer costs a sleeping thread, never a stuck one.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec deadline_in(unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int rc = poll(&p, 1, timeout_ms);
        if (rc > 0)
            return 1;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
        timeout_ms = (int)(deadline - now_ms());
        if (timeout_ms < 0)
            return 0;
    }
}

ssize_t read_some(int fd, void *buf, size_t len, int timeout_ms)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        int w = wait_fd(fd, POLLIN, timeout_ms);
        if (w == 0)
            return -2;
        if (w < 0)
            return -1;
    }
}

int write_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        int w = wait_fd(fd, POLLOUT, timeout_ms);
        if (w == 0)
            return -2;
        if (w < 0)
            return -1;
    }
    return 0;
}

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

enum head_status read_head(int fd, char *buf, size_t cap, size_t *len, int64_t deadline)
{
    while (http_head_length(buf, *len) == 0) {
        if (*len >= cap)
            return HEAD_TOO_LARGE;
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return HEAD_TIMEOUT;
        ssize_t n = read_some(fd, buf + *len, cap - *len, (int)left);
        if (n == -2)
            return HEAD_TIMEOUT;
        if (n < 0)
            return HEAD_ERROR;
        if (n == 0)
            return *len ? HEAD_PARTIAL_EOF : HEAD_EOF;
        *len += (size_t)n;
    }
    return HEAD_OK;
}
