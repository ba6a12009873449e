/*
 * conn.c - one client connection, from conn_open to its one conn_close.
 *
 * A connection holds a reference to the configuration in force when it
 * came (a kept-alive one moves to a newer one between requests), the
 * client's socket as a buffered stream, the identity of the process on the
 * other end once a rule has needed it, and its address for the logs.  The
 * handlers decide through conn_decide, so that the identity is looked up
 * at most once per connection, and fail through conn_fail, so that every
 * refusal is logged once and answered in egressd's own shape, and every
 * denial (policy, address, secret) is noted in the denial record; a
 * denial's answer carries a hint when an allow rule could admit it.
 */
#include "proxy.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINGER_MS      1000
#define LINGER_BYTES   (256 * 1024)
#define ERROR_WRITE_MS 2000 /* an error answer is small: a peer that will not take it loses it */
#define DRAIN_MAX      (1u << 20) /* a denied request's body read to keep the connection: no more */

struct conn *conn_open(struct runtime *rt, int fd, const struct sockaddr_storage *peer,
                       struct relay_pipes *pipes)
{
    struct conn *c = malloc(sizeof(*c));
    char *buf = malloc(HTTP_HEAD_MAX);
    struct stream *s = stream_plain(fd);
    if (c == NULL || buf == NULL || s == NULL) {
        free(c);
        free(buf);
        stream_free(s);
        close(fd);
        log_msg(LOGL_ERROR, "connect", "out of memory for a new connection");
        return NULL;
    }
    c->rt = rt;
    c->pipes = pipes;
    c->generation = holder_generation(&rt->cfg); /* before the snapshot: a reload between is seen */
    c->snap = holder_acquire(&rt->cfg);
    c->pol = c->snap->pol;
    c->set = policy_settings(c->pol);
    c->fd = fd;
    c->buf = buf;
    bufconn_init(&c->in, s, buf, HTTP_HEAD_MAX);
    c->t0 = now_ms();
    c->upstream = NULL;
    c->id = NULL;
    c->closed_cleanly = false;
    format_sockaddr((const struct sockaddr *)peer, c->src, sizeof(c->src));
    return c;
}

/* Closing a socket with unread input makes the kernel send a reset, which
 * can destroy the error response the client has not read yet (a client
 * still sending an oversized head, say).  So: shut our side, then read and
 * discard for a short, bounded while before closing. */
static void linger_close(int fd)
{
    char junk[16384];
    size_t total = 0, got;
    int64_t deadline = now_ms() + LINGER_MS;
    shutdown(fd, SHUT_WR);
    while (total < LINGER_BYTES && fd_read(fd, junk, sizeof(junk), &got, deadline) == IO_OK)
        total += got;
    close(fd);
}

void conn_close(struct conn *c, const char *reason)
{
    if (log_enabled(LOGL_DEBUG))
        log_msg(LOGL_DEBUG, "close", "%s: %s", c->src, reason);
    stream_free(c->in.s);
    if (c->closed_cleanly)
        close(c->fd); /* both sides said goodbye: nothing left to drain */
    else
        linger_close(c->fd);
    snapshot_unref(c->snap);
    identity_free(c->id);
    free(c->buf);
    free(c);
}

void conn_drop_buffer(struct conn *c)
{
    free(c->buf);
    c->buf = NULL;
    bufconn_init(&c->in, c->in.s, NULL, 0);
}

const struct identity *conn_identity(struct conn *c)
{
    if (c->id == NULL)
        c->id = identity_lookup(c->fd, c->set->sandbox_pid, c->rt->trust,
                                now_ms() + IDENTITY_LOOKUP_MS);
    return c->id;
}

/* The caller's pid and binary into f, once it was looked up. */
static void fill_caller(const struct conn *c, struct log_fields *f)
{
    if (c->id != NULL && c->id->n > 0) {
        f->pid = c->id->holder[0].pid;
        f->binary = c->id->holder[0].chain[0];
    }
}

void conn_identify(struct conn *c, struct log_fields *f)
{
    if (policy_uses_identity(c->pol))
        conn_identity(c);
    fill_caller(c, f);
}

void conn_decide(struct conn *c, const struct host *h, uint16_t port, struct policy_decision *d,
                 struct log_fields *f)
{
    if (policy_wants_identity(c->pol, h, port))
        conn_identity(c);
    policy_decide_as(c->pol, h, port, c->id, d);
    fill_caller(c, f);
    metrics_connection(d->action);
}

struct snapshot *conn_redecide(struct conn *c, const struct host *h, uint16_t port, unsigned *gen,
                               struct policy_decision *d)
{
    unsigned now = holder_generation(&c->rt->cfg);
    if (now == *gen)
        return NULL;
    *gen = now;
    struct snapshot *s = holder_acquire(&c->rt->cfg);
    policy_decide_as(s->pol, h, port, c->id, d);
    return s;
}

bool conn_still_allowed(void *ctx)
{
    struct conn_recheck *r = ctx;
    struct policy_decision d;
    struct snapshot *s = conn_redecide(r->c, r->h, r->port, &r->generation, &d);
    if (s == NULL)
        return true;
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    const char *why;
    bool ok = d.action == r->want &&
              getpeername(r->upstream, (struct sockaddr *)&peer, &len) == 0 &&
              policy_address_denied(s->pol, (struct sockaddr *)&peer, r->port, r->c->id) < 0 &&
              policy_address_permitted(s->pol, &d, (struct sockaddr *)&peer, &why);
    snapshot_unref(s);
    return ok;
}

void conn_follow_reload(struct conn *c)
{
    unsigned now = holder_generation(&c->rt->cfg);
    if (now == c->generation)
        return;
    struct snapshot *s = holder_acquire(&c->rt->cfg);
    snapshot_unref(c->snap);
    c->snap = s;
    c->pol = s->pol;
    c->set = policy_settings(s->pol);
    c->generation = now;
}

/* The stage of a denial among the answers, or -1 when info is no denial. */
static int denial_stage(const struct http_error_info *info)
{
    if (info->e == &ERR_POLICY_DENIED)
        return info->method != NULL ? DENIAL_REQUEST : DENIAL_CONNECT;
    if (info->e == &ERR_SSRF_DENIED)
        return DENIAL_SSRF;
    if (info->e == &ERR_SECRET_NOT_ALLOWED)
        return DENIAL_SECRET;
    return -1;
}

void conn_note_denial(struct conn *c, struct log_fields *l, const struct http_error_info *info,
                      enum denial_stage stage)
{
    conn_identify(c, l);
    l->denial = denial_stage_name(stage);
    struct denial_note n = {.stage = stage,
                            .host = l->host,
                            .port = l->port > 0 ? (unsigned)l->port : 0,
                            .binary = l->binary,
                            .method = info->method,
                            .path = info->path,
                            .rule = info->rule ? info->rule : l->rule,
                            .reason = info->detail ? info->detail : l->reason};
    denials_note(c->rt->denials, &n);
}

void conn_fail_info(struct conn *c, const struct log_fields *f, const struct http_error_info *info)
{
    const struct http_error *e = info->e;
    struct log_fields l = *f;
    struct http_error_info said = *info;
    int stage = denial_stage(info);
    l.src = c->src;
    l.status = e->status;
    l.reason = l.reason ? l.reason : e->code;
    if (e == &ERR_SSRF_DENIED || e == &ERR_POLICY_DENIED)
        l.action = "deny"; /* allowed by name, perhaps refused by address */
    l.detail = info->detail;
    l.duration_ms = now_ms() - c->t0;
    if (stage >= 0)
        conn_note_denial(c, &l, info, (enum denial_stage)stage);
    log_event(e->status >= 500 ? LOGL_WARN : LOGL_INFO, &l);
    metrics_upstream_error(e->code);                         /* counts only the upstream kinds */
    if (said.host == NULL && f->host != NULL && f->port > 0) /* for the reason phrase */
        said.host = f->host, said.port = (unsigned)f->port;
    (void)http_send_error_info(c->in.s, &said, now_ms() + ERROR_WRITE_MS);
}

void conn_fail(struct conn *c, const struct log_fields *f, const struct http_error *e,
               const char *detail)
{
    /* a policy denial that comes here comes from the address check: a deny
     * rule named an address the destination resolved to */
    struct http_error_info info = {.e = e,
                                   .detail = detail,
                                   .rule = f->rule,
                                   .by_deny_rule = e == &ERR_POLICY_DENIED && f->rule != NULL};
    conn_fail_info(c, f, &info);
}

void conn_denial_info(struct conn *c, const struct policy *p, const struct host *h, uint16_t port,
                      const struct request_view *rq, const struct policy_decision *d,
                      struct http_error_info *info, char *hint, size_t cap)
{
    struct log_fields unused = LOG_FIELDS_INIT;
    *info = (struct http_error_info){.e = &ERR_POLICY_DENIED,
                                     .detail = d->reason,
                                     .rule = d->rule,
                                     .message = d->message,
                                     .by_deny_rule = policy_rule_is_deny(p, d->rule_index)};
    if (!policy_settings(p)->hints || info->by_deny_rule)
        return;
    conn_identify(c, &unused); /* a hint names the program when identity is configured */
    if (policy_hint(p, h, port, c->id, rq, d, hint, cap))
        info->hint = hint;
}

void conn_deny(struct conn *c, const struct log_fields *f, const struct host *h, uint16_t port,
               const struct policy_decision *d)
{
    char hint[POLICY_HINT_MAX];
    struct http_error_info info;
    conn_denial_info(c, c->pol, h, port, NULL, d, &info, hint, sizeof(hint));
    conn_fail_info(c, f, &info);
}

static int discard(void *ctx, const char *p, size_t n)
{
    (void)ctx, (void)p, (void)n;
    return 0;
}

bool conn_drain_request(struct conn *c, const struct http_msg *m)
{
    const char *why;
    uint64_t moved;
    struct body_limits lim = {.max = DRAIN_MAX,
                              .idle_ms = (int)c->set->header_timeout_ms,
                              .deadline = now_ms() + c->set->header_timeout_ms,
                              .decode = true};
    struct body_sink sink = {discard, NULL};
    if (m->minor != 1 || m->conn_close || m->expect_continue || m->framing == BODY_UNTIL_CLOSE)
        return false;
    return http_pump_body(&c->in, m->framing, m->content_length, &lim, &sink, &moved, &why) ==
           PUMP_DONE;
}
