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

#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>

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

/* After a call on fd failed with errno: IO_OK to try again once fd is
 * ready (EAGAIN), IO_ERROR on any other error, IO_TIMEOUT at the deadline. */
static enum io_result wait_to_retry(int fd, short events, int64_t deadline)
{
    if (errno != EAGAIN && errno != EWOULDBLOCK)
        return IO_ERROR;
    int64_t left = deadline - now_ms();
    if (left <= 0)
        return IO_TIMEOUT;
    int w = fd_wait(fd, events, left > INT32_MAX ? INT32_MAX : (int)left);
    return w > 0 ? IO_OK : w == 0 ? IO_TIMEOUT : IO_ERROR;
}

enum io_result fd_read(int fd, void *buf, size_t cap, size_t *got, int64_t deadline)
{
    *got = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, cap, 0);
        if (n > 0) {
            *got = (size_t)n;
            return IO_OK;
        }
        if (n == 0)
            return IO_EOF;
        if (errno == EINTR)
            continue;
        enum io_result w = wait_to_retry(fd, POLLIN, deadline);
        if (w != IO_OK)
            return w;
    }
}

/* Write at least one byte: IO_OK with *put > 0, or why not. */
static enum io_result fd_write_some(int fd, const void *buf, size_t len, size_t *put,
                                    int64_t deadline)
{
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            *put = (size_t)n;
            return IO_OK;
        }
        if (n < 0 && errno == EINTR)
            continue;
        enum io_result w = wait_to_retry(fd, POLLOUT, deadline);
        if (w != IO_OK)
            return w;
    }
}

enum io_result fd_write_all(int fd, const void *buf, size_t len, int64_t deadline)
{
    const char *p = buf;
    while (len > 0) {
        size_t put;
        enum io_result r = fd_write_some(fd, p, len, &put, deadline);
        if (r != IO_OK)
            return r;
        p += put;
        len -= put;
    }
    return IO_OK;
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

size_t stream_pending(const struct stream *s)
{
    if (s->tls == NULL)
        return 0;
    return mbedtls_ssl_get_bytes_avail(&s->tls->ssl) + s->tls->ahead_len + s->prelen;
}

/* What bio_recv returns for an fd_read that brought nothing: 0 is the
 * peer's close. */
static int bio_recv_failed(struct stream *s, enum io_result r)
{
    if (r == IO_TIMEOUT) {
        s->timed_out = true;
        return MBEDTLS_ERR_SSL_TIMEOUT;
    }
    return r == IO_EOF ? 0 : MBEDTLS_ERR_NET_RECV_FAILED;
}

int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    struct stream *s = ctx;
    size_t got;
    if (s->prelen > 0) {
        size_t n = len < s->prelen ? len : s->prelen;
        memcpy(buf, s->pre, n);
        s->pre += n;
        s->prelen -= n;
        return (int)n;
    }
    if (s->tls->ahead_len == 0 && len < sizeof(s->tls->ahead)) {
        enum io_result r = fd_read(s->fd, s->tls->ahead, sizeof(s->tls->ahead), &got, s->deadline);
        if (r != IO_OK)
            return bio_recv_failed(s, r);
        s->tls->ahead_off = 0;
        s->tls->ahead_len = got;
    }
    if (s->tls->ahead_len > 0) {
        size_t n = len < s->tls->ahead_len ? len : s->tls->ahead_len;
        memcpy(buf, s->tls->ahead + s->tls->ahead_off, n);
        s->tls->ahead_off += n;
        s->tls->ahead_len -= n;
        return (int)n;
    }
    /* a large record's body: straight into mbedTLS's buffer */
    enum io_result r = fd_read(s->fd, buf, len > INT32_MAX ? INT32_MAX : len, &got, s->deadline);
    return r != IO_OK ? bio_recv_failed(s, r) : (int)got;
}

int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    struct stream *s = ctx;
    size_t put;
    enum io_result r =
        fd_write_some(s->fd, buf, len > INT32_MAX ? INT32_MAX : len, &put, s->deadline);
    if (r == IO_TIMEOUT) {
        s->timed_out = true;
        return MBEDTLS_ERR_SSL_TIMEOUT;
    }
    return r != IO_OK ? MBEDTLS_ERR_NET_SEND_FAILED : (int)put;
}

enum io_result stream_read(struct stream *s, void *buf, size_t cap, size_t *got, int64_t deadline)
{
    *got = 0;
    if (!s->tls)
        return fd_read(s->fd, buf, cap, got, deadline);
    s->deadline = deadline;
    s->timed_out = false;
    for (;;) {
        int rc = mbedtls_ssl_read(&s->tls->ssl, buf, cap);
        if (rc > 0) {
            *got = (size_t)rc;
            return IO_OK;
        }
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
            return IO_EOF;
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            continue; /* a record with no application data in it */
        return s->timed_out ? IO_TIMEOUT : IO_ERROR;
    }
}

enum io_result stream_write_all(struct stream *s, const void *buf, size_t len, int64_t deadline)
{
    if (!s->tls)
        return fd_write_all(s->fd, buf, len, deadline);
    const unsigned char *p = buf;
    s->deadline = deadline;
    s->timed_out = false;
    while (len > 0) {
        int rc = mbedtls_ssl_write(&s->tls->ssl, p, len);
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            continue;
        if (rc <= 0)
            return s->timed_out ? IO_TIMEOUT : IO_ERROR;
        p += rc;
        len -= (size_t)rc;
    }
    return IO_OK;
}

void stream_free(struct stream *s)
{
    if (s == NULL)
        return;
    if (s->tls) {
        s->deadline = now_ms() + CLOSE_NOTIFY_MS;
        (void)mbedtls_ssl_close_notify(&s->tls->ssl); /* a courtesy: the peer may be gone */
        mbedtls_ssl_free(&s->tls->ssl);
        free(s->tls);
    }
    free(s);
}

/* A stream ready for a TLS handshake under conf. */
struct stream *stream_tls_new(int fd, const mbedtls_ssl_config *conf, int64_t deadline)
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
    s->deadline = deadline;
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
