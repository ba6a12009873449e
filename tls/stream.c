/*
 * stream.c - deadline-bounded socket I/O, and streams: the same read/write
 * calls over a plain socket or a TLS session.
 *
 * Every socket egressd holds is non-blocking; a thread blocks in poll(2)
 * with a timeout instead of in read or write, so that no wait is without a
 * deadline and a slow peer costs a sleeping thread, never a stuck one.
 * mbedTLS reaches the socket only through bio_recv/bio_send below, which
 * use the same waits; bytes the caller had already read from the socket
 * (the start of a ClientHello that arrived with the CONNECT head) are fed
 * to mbedTLS before the socket.
 */
#include "tls_int.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fd_wait(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int rc = poll(&p, 1, timeout_ms);
        if (rc > 0)
            return p.revents;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
        /* EINTR: signals are blocked in every worker, so this is rare enough
         * to restart the whole wait rather than track the time left */
    }
}

/* After a call on fd failed with errno: 0 to try again once fd is ready
 * (EAGAIN), -1 on any other error, -2 on timeout. */
static int wait_to_retry(int fd, short events, int timeout_ms)
{
    if (errno != EAGAIN && errno != EWOULDBLOCK)
        return -1;
    int w = fd_wait(fd, events, timeout_ms);
    return w > 0 ? 0 : w == 0 ? -2 : -1;
}

ssize_t fd_read(int fd, void *buf, size_t len, int timeout_ms)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        int w = wait_to_retry(fd, POLLIN, timeout_ms);
        if (w < 0)
            return w;
    }
}

/* Write at least one byte: count, -1 on error, -2 on timeout. */
static ssize_t fd_write_some(int fd, const void *buf, size_t len, int timeout_ms)
{
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0)
            return n;
        if (n < 0 && errno == EINTR)
            continue;
        int w = wait_to_retry(fd, POLLOUT, timeout_ms);
        if (w < 0)
            return w;
    }
}

int fd_write_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = fd_write_some(fd, p, len, timeout_ms);
        if (n < 0)
            return (int)n;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- streams ------------------------------------------------------------- */

struct stream *stream_plain(int fd)
{
    struct stream *s = calloc(1, sizeof(*s));
    if (s != NULL)
        s->fd = fd;
    return s;
}

int stream_fd(const struct stream *s)
{
    return s->fd;
}

bool stream_is_tls(const struct stream *s)
{
    return s->tls != NULL;
}

/* What bio_recv returns for fd_read's n <= 0: 0 is the peer's close. */
static int bio_recv_failed(struct stream *s, ssize_t n)
{
    if (n == -2) {
        s->timed_out = true;
        return MBEDTLS_ERR_SSL_TIMEOUT;
    }
    return n < 0 ? MBEDTLS_ERR_NET_RECV_FAILED : 0;
}

int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    struct stream *s = ctx;
    if (s->prelen > 0) {
        size_t n = len < s->prelen ? len : s->prelen;
        memcpy(buf, s->pre, n);
        s->pre += n;
        s->prelen -= n;
        return (int)n;
    }
    if (s->tls->ahead_len == 0 && len < sizeof(s->tls->ahead)) {
        ssize_t n = fd_read(s->fd, s->tls->ahead, sizeof(s->tls->ahead), s->timeout_ms);
        if (n <= 0)
            return bio_recv_failed(s, n);
        s->tls->ahead_off = 0;
        s->tls->ahead_len = (size_t)n;
    }
    if (s->tls->ahead_len > 0) {
        size_t n = len < s->tls->ahead_len ? len : s->tls->ahead_len;
        memcpy(buf, s->tls->ahead + s->tls->ahead_off, n);
        s->tls->ahead_off += n;
        s->tls->ahead_len -= n;
        return (int)n;
    }
    /* a large record's body: straight into mbedTLS's buffer */
    ssize_t n = fd_read(s->fd, buf, len > INT32_MAX ? INT32_MAX : len, s->timeout_ms);
    return n <= 0 ? bio_recv_failed(s, n) : (int)n;
}

int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    struct stream *s = ctx;
    if (len > INT32_MAX)
        len = INT32_MAX;
    ssize_t n = fd_write_some(s->fd, buf, len, s->timeout_ms);
    if (n == -2) {
        s->timed_out = true;
        return MBEDTLS_ERR_SSL_TIMEOUT;
    }
    return n < 0 ? MBEDTLS_ERR_NET_SEND_FAILED : (int)n;
}

ssize_t stream_read(struct stream *s, void *buf, size_t len, int timeout_ms)
{
    if (!s->tls)
        return fd_read(s->fd, buf, len, timeout_ms);
    s->timeout_ms = timeout_ms;
    s->timed_out = false;
    for (;;) {
        int rc = mbedtls_ssl_read(&s->tls->ssl, buf, len);
        if (rc > 0)
            return rc;
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
            return 0;
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            continue; /* a record with no application data in it */
        return s->timed_out ? -2 : -1;
    }
}

int stream_write_all(struct stream *s, const void *buf, size_t len, int timeout_ms)
{
    if (!s->tls)
        return fd_write_all(s->fd, buf, len, timeout_ms);
    const unsigned char *p = buf;
    s->timeout_ms = timeout_ms;
    s->timed_out = false;
    while (len > 0) {
        int rc = mbedtls_ssl_write(&s->tls->ssl, p, len);
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            continue;
        if (rc <= 0)
            return s->timed_out ? -2 : -1;
        p += rc;
        len -= (size_t)rc;
    }
    return 0;
}

void stream_free(struct stream *s)
{
    if (s == NULL)
        return;
    if (s->tls) {
        s->timeout_ms = CLOSE_NOTIFY_MS;
        (void)mbedtls_ssl_close_notify(&s->tls->ssl); /* a courtesy: the peer may be gone */
        mbedtls_ssl_free(&s->tls->ssl);
        free(s->tls);
    }
    free(s);
}

/* A stream ready for a TLS handshake under conf. */
struct stream *stream_tls_new(int fd, const mbedtls_ssl_config *conf, int timeout_ms)
{
    struct stream *s = stream_plain(fd);
    struct tls_session *t = malloc(sizeof(*t));
    if (s == NULL || t == NULL) {
        free(s);
        free(t);
        return NULL;
    }
    mbedtls_ssl_init(&t->ssl);
    t->ahead_off = t->ahead_len = 0;
    s->timeout_ms = timeout_ms;
    if (mbedtls_ssl_setup(&t->ssl, conf) != 0) {
        mbedtls_ssl_free(&t->ssl);
        free(t);
        free(s);
        return NULL;
    }
    s->tls = t;
    mbedtls_ssl_set_bio(&t->ssl, s, bio_send, bio_recv, NULL);
    return s;
}

/* Run the handshake; 0, or -1 with err describing why. */
int stream_handshake(struct stream *s, char *err, size_t errlen)
{
    for (;;) {
        int rc = mbedtls_ssl_handshake(&s->tls->ssl);
        if (rc == 0)
            return 0;
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            continue;
        tls_describe(rc, s->timed_out, err, errlen);
        return -1;
    }
}
