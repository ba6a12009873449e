/*
 * worker.c - one client connection, from its first byte to its close.
 *
 * The worker takes a reference to the configuration in force, reads the
 * request head within header_timeout, and hands the request to the CONNECT
 * (tunnel.c) or absolute-form (forward.c) path.  Whatever happens, the
 * client gets an answer in egressd's JSON error shape and one log line.
 */
#include "proxy.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LINGER_MS    1000
#define LINGER_BYTES (256 * 1024)

/* Closing a socket with unread input makes the kernel send a reset, which
 * can destroy the error response the client has not read yet (a client
 * still sending an oversized head, say).  So: shut our side, then read and
 * discard for a short, bounded while before closing. */
static void linger_close(int fd)
{
    char junk[16384];
    size_t total = 0;
    int64_t deadline = now_ms() + LINGER_MS;
    shutdown(fd, SHUT_WR);
    size_t got;
    while (total < LINGER_BYTES && fd_read(fd, junk, sizeof(junk), &got, deadline) == IO_OK)
        total += got;
    close(fd);
}

void conn_decide(struct conn *c, const struct host *h, uint16_t port, struct policy_decision *d,
                 struct log_fields *f)
{
    if (c->id == NULL && policy_wants_identity(c->pol, h, port))
        c->id = identity_lookup(c->fd, c->set->sandbox_pid, server_trust(c->srv));
    policy_decide_as(c->pol, h, port, c->id, d);
    if (c->id != NULL && c->id->n > 0) {
        f->pid = c->id->holder[0].pid;
        f->binary = c->id->holder[0].chain[0];
    }
    metrics_connection(d->action);
}

struct snapshot *conn_redecide(struct conn *c, const struct host *h, uint16_t port, unsigned *gen,
                               struct policy_decision *d)
{
    unsigned now = server_generation(c->srv);
    if (now == *gen)
        return NULL;
    *gen = now;
    struct snapshot *s = server_snapshot(c->srv);
    policy_decide_as(s->pol, h, port, c->id, d);
    return s;
}

void conn_consume(struct conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

void conn_fail(struct conn *c, const struct log_fields *f, const struct proxy_error *e,
               const char *detail)
{
    struct log_fields l = *f;
    l.src = c->src;
    l.status = e->status;
    l.reason = l.reason ? l.reason : e->code;
    if (e == &ERR_SSRF_DENIED || e == &ERR_POLICY_DENIED)
        l.action = "deny"; /* allowed by name, perhaps refused by address */
    l.detail = detail;
    l.duration_ms = now_ms() - c->t0;
    log_event(e->status >= 500 ? LOGL_WARN : LOGL_INFO, &l);
    metrics_upstream_error(e->code); /* counts only the upstream kinds */
    respond_error(c->fd, e, detail, l.rule);
}

static void head_failed(struct conn *c, enum head_status st)
{
    struct log_fields f = LOG_FIELDS_INIT;
    f.event = "connect";
    f.action = "deny";
    switch (st) {
    case HEAD_TIMEOUT:
        conn_fail(c, &f, &ERR_REQUEST_TIMEOUT, "request head not received in time");
        break;
    case HEAD_TOO_LARGE:
        conn_fail(c, &f, &ERR_HEADERS_TOO_LARGE, "request head larger than 8 KiB");
        break;
    case HEAD_PARTIAL_EOF: /* it may still read: say why nothing happened */
        conn_fail(c, &f, &ERR_BAD_REQUEST, "the request head ended before its blank line");
        break;
    default:
        break; /* connected and left, or reset: nothing to say to anybody */
    }
}

static bool target_has_scheme(const struct http_msg *m, const char *scheme)
{
    size_t n = strlen(scheme);
    return m->target_len >= n && strncasecmp(m->target, scheme, n) == 0;
}

/* One request; true when the connection may carry another. */
static bool dispatch(struct conn *c, struct http_msg *m)
{
    struct log_fields f = LOG_FIELDS_INIT;
    f.event = "forward";
    f.action = "deny";
    if (m->method_len == 7 && memcmp(m->method, "CONNECT", 7) == 0)
        tunnel_serve(c, m);
    else if (target_has_scheme(m, "http://"))
        return forward_serve(c, m);
    else if (target_has_scheme(m, "https://"))
        conn_fail(c, &f, &ERR_USE_CONNECT,
                  "https:// URLs go through CONNECT; set HTTPS_PROXY, not an absolute https URL");
    else
        conn_fail(c, &f, &ERR_BAD_REQUEST,
                  "egressd is a proxy: send CONNECT host:port or an absolute http:// URL");
    return false;
}

/* A kept-alive client's next request is decided under the configuration
 * in force now, like a tunnel after a reload; a kept upstream connection
 * was checked under the old rules, so it goes. */
static void follow_reload(struct conn *c)
{
    unsigned now = server_generation(c->srv);
    if (now == c->generation)
        return;
    struct snapshot *s = server_snapshot(c->srv);
    forward_release(c);
    snapshot_unref(c->snap);
    c->snap = s;
    c->pol = s->pol;
    c->set = policy_settings(s->pol);
    c->generation = now;
}

/* Read and answer requests until one ends the connection.  A kept-alive
 * connection that sends nothing more within header_timeout is closed
 * quietly: that is an idle client, not a slow one. */
static void serve_requests(struct conn *c)
{
    for (bool first = true;; first = false) {
        int64_t start = now_ms();
        enum head_status st = http_read_head(c->cs, c->buf, sizeof(c->buf), &c->len,
                                             start + c->set->header_timeout_ms);
        if (st != HEAD_OK) {
            if (first || c->len > 0)
                head_failed(c, st);
            return;
        }
        if (!first) {
            c->t0 = now_ms();
            follow_reload(c);
        }
        struct http_msg m;
        const char *why = NULL;
        if (http_parse_request(c->buf, c->len, &m, &why) != HTTP_OK) {
            struct log_fields f = LOG_FIELDS_INIT;
            f.event = "connect";
            f.action = "deny";
            conn_fail(c, &f, &ERR_BAD_REQUEST, why);
            return;
        }
        if (!dispatch(c, &m))
            return;
    }
}

void conn_serve(struct server *srv, int fd, const struct sockaddr_storage *peer,
                struct relay_pipes *pipes)
{
    struct conn *c = malloc(sizeof(*c));
    struct stream *cs = stream_plain(fd);
    if (c == NULL || cs == NULL) {
        free(c);
        stream_free(cs);
        close(fd);
        log_msg(LOGL_ERROR, "connect", "out of memory for a new connection");
        return;
    }
    c->srv = srv;
    c->pipes = pipes;
    c->generation = server_generation(srv); /* before the snapshot: a reload between is seen */
    c->snap = server_snapshot(srv);
    c->pol = c->snap->pol;
    c->set = policy_settings(c->pol);
    c->fd = fd;
    c->cs = cs;
    c->len = 0;
    c->t0 = now_ms();
    c->upstream = NULL;
    c->id = NULL;
    c->closed_cleanly = false;
    format_sockaddr((const struct sockaddr *)peer, c->src, sizeof(c->src));
    serve_requests(c);
    forward_release(c);
    stream_free(c->cs);
    if (c->closed_cleanly)
        close(fd); /* both sides said goodbye: nothing left to drain */
    else
        linger_close(fd);
    snapshot_unref(c->snap);
    identity_free(c->id);
    free(c);
}
