/*
 * forward.c - absolute-form http:// requests (a plain HTTP forward proxy).
 *
 * The request gets the same policy decision and address check as a
 * tunnel (by method and path too, when rules with request keys name the
 * destination: then it is an inspected request, refused for unsafe paths
 * and logged as one), then goes upstream in origin form with exactly one
 * Host (from the URL, as RFC 9112 asks of proxies), without hop-by-hop and
 * Proxy-* fields, with a Via, through exchange.c.  The upstream connection
 * is kept and reused when the next request goes to the same place; a
 * request without a body is sent once more on a fresh connection when a
 * kept one turns out closed.  A WebSocket upgrade is relayed raw after the
 * origin's 101.  An HTTP/1.0 client's request goes upstream as HTTP/1.0,
 * so the answer never comes chunked to a client that cannot read it.
 */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define PATH_VIEW 2048

/* The kept upstream connection of a client connection. */
struct upstream {
    int fd; /* -1: none */
    struct bufconn in;
    char key[POLICY_HOST_MAX + 8]; /* host:port it is connected to */
    char buf[UP_BUF_SIZE];
};

struct target {
    struct host h;
    uint16_t port;
    const char *path;
    size_t path_len;
};

/* One forwarded request. */
struct forward {
    struct conn *c;
    struct target t;
    struct policy_decision d;
    struct log_fields f;
    struct exchange ex;
    bool inspected, keep_after_denial;
    enum policy_action dest_action; /* the destination's decision, before any request's */
    char method[32], path[PATH_VIEW], folded[PATH_VIEW];
    char detail[320];
    struct request_secrets secrets;
    char hint[POLICY_HINT_MAX];
};

static int parse_url(const struct http_msg *m, struct target *t, const char **why)
{
    const char *p = m->target + 7, *end = m->target + m->target_len;
    const char *a = p;
    while (a < end && *a != '/' && *a != '?')
        a++;
    if (memchr(p, '@', (size_t)(a - p)) != NULL) {
        *why = "userinfo is not allowed in URLs";
        return -1;
    }
    if (memchr(a, '#', (size_t)(end - a)) != NULL) {
        *why = "fragment in request target";
        return -1;
    }
    t->path = a;
    t->path_len = (size_t)(end - a);
    return host_port_parse(p, (size_t)(a - p), 80, &t->h, &t->port, why);
}

static void upstream_close(struct conn *c)
{
    struct upstream *u = c->upstream;
    if (u != NULL && u->fd >= 0) {
        stream_free(u->in.s);
        close(u->fd);
        u->fd = -1;
    }
}

void forward_release(struct conn *c)
{
    upstream_close(c);
    free(c->upstream);
    c->upstream = NULL;
}

/* A connected upstream for fw->t: the kept one if it goes to the same place. */
static const struct http_error *upstream_get(struct forward *fw, bool *reused)
{
    struct conn *c = fw->c;
    char key[sizeof(c->upstream->key)];
    snprintf(key, sizeof(key), "%s:%u", fw->t.h.name, fw->t.port);
    if (c->upstream == NULL && (c->upstream = malloc(sizeof(*c->upstream))) != NULL)
        c->upstream->fd = -1;
    struct upstream *u = c->upstream;
    if (u == NULL) {
        snprintf(fw->detail, sizeof(fw->detail), "out of memory");
        return &ERR_OVERLOADED;
    }
    *reused = u->fd >= 0 && strcmp(u->key, key) == 0;
    if (*reused)
        return NULL;
    upstream_close(c);
    struct dial_result r;
    dial(c, &fw->t.h, fw->t.port, &fw->d, &r);
    if (r.err != NULL) {
        snprintf(fw->detail, sizeof(fw->detail), "%s", r.detail);
        fw->f.rule = r.rule ? r.rule : fw->f.rule;
        return r.err;
    }
    struct stream *s = stream_plain(r.fd);
    if (s == NULL) {
        close(r.fd);
        snprintf(fw->detail, sizeof(fw->detail), "out of memory");
        return &ERR_OVERLOADED;
    }
    u->fd = r.fd;
    bufconn_init(&u->in, s, u->buf, sizeof(u->buf));
    snprintf(u->key, sizeof(u->key), "%s", key);
    return NULL;
}

/* After a failed send: answered, or logged when the client is gone. */
static bool send_failed(struct forward *fw, enum send_result rc, const struct http_error *err)
{
    upstream_close(fw->c); /* it has part of a request: never reused */
    fw->f.reason = fw->ex.why;
    err = exchange_client_error(rc, err);
    if (err == NULL) {
        fw->f.src = fw->c->src;
        log_event(LOGL_INFO, &fw->f);
        return false;
    }
    conn_fail(fw->c, &fw->f, err, fw->ex.why);
    return false;
}

/* The request up and its final response head back, once more on a fresh
 * connection when a kept one was found closed; false when answered. */
static bool send_and_wait(struct forward *fw, const struct sbuf *o, struct http_msg *r)
{
    for (int attempt = 0;; attempt++) {
        bool reused, stale = false;
        const struct http_error *err = upstream_get(fw, &reused);
        if (err != NULL) {
            fw->f.reason = err->code;
            conn_fail(fw->c, &fw->f, err, fw->detail);
            return false;
        }
        fw->ex.upstream = &fw->c->upstream->in;
        enum send_result rc = exchange_send(&fw->ex, o->buf, o->len, reused);
        if (rc == SENT)
            err = exchange_response(&fw->ex, r, &stale);
        bool retry = reused && attempt == 0 &&
                     (rc == UPSTREAM_STALE || (rc == SENT && stale && fw->ex.framing == BODY_NONE));
        if (retry) {
            upstream_close(fw->c); /* the origin closed a kept connection: once more, fresh */
            continue;
        }
        if (rc != SENT || err != NULL)
            return send_failed(fw, rc, err);
        return true;
    }
}

/* The answer relayed; true when the client connection may carry another. */
static bool answer(struct forward *fw, struct http_msg *r, char *out)
{
    bool keep = exchange_relay(&fw->ex, r, out, OUT_HEAD_MAX);
    fw->f.status = fw->ex.status; /* the origin's, or egressd's 502 */
    if (fw->ex.status == 101) {   /* a WebSocket: both ways, raw, to the end */
        struct relay_stats st;
        struct conn_recheck rc = {
            fw->c, &fw->t.h, fw->t.port, fw->c->upstream->fd, fw->c->generation, fw->dest_action};
        struct relay_check check = {conn_still_allowed, &rc};
        exchange_upgraded(&fw->ex, fw->c->pipes, &check, &st);
        fw->ex.up_bytes += st.up;
        fw->ex.down_bytes += st.down;
        fw->ex.why = st.end;
        keep = false;
    } else if (!fw->ex.upstream_keep || !keep) {
        upstream_close(fw->c);
    }
    fw->f.reason = keep || fw->ex.why == NULL ? "allowed by rule" : fw->ex.why;
    return keep;
}

/* A request egressd answers itself, read to its end (body drained) so
 * that the connection goes on when it can (fw->keep_after_denial). */
static void refuse_request(struct forward *fw, const struct http_msg *m,
                           struct http_error_info *info)
{
    info->method = fw->f.method;
    info->path = fw->f.path;
    bufconn_consume(&fw->c->in, m->head_len);
    info->keep = fw->keep_after_denial = conn_drain_request(fw->c, m);
    conn_fail_info(fw->c, &fw->f, info);
    if (fw->inspected)
        metrics_request(&fw->d);
}

/* For an inspected destination: the request's own decision; false when
 * the client got its answer (refused or denied). */
static bool decide_request(struct forward *fw, const struct http_msg *m)
{
    const char *why;
    struct http_error_info info = {.e = &ERR_BAD_REQUEST};
    snprintf(fw->method, sizeof(fw->method), "%.*s", (int)m->method_len, m->method);
    fw->f.event = "request";
    fw->f.action = "deny"; /* until a rule says otherwise */
    fw->f.method = fw->method;
    const struct http_header *up = http_header_find(m, "upgrade");
    if (http_path_check(fw->t.path, fw->t.path_len, &why) != 0 ||
        http_path_view(fw->t.path, fw->t.path_len, fw->path, sizeof(fw->path), fw->folded,
                       sizeof(fw->folded), &why) != 0) {
        info.detail = why;
    } else if (up != NULL && !fw->ex.websocket) {
        info = (struct http_error_info){
            .e = &ERR_UNSUPPORTED_PROTOCOL,
            .detail = "only WebSocket upgrades (with a Sec-WebSocket-Key) pass"};
    } else {
        fw->f.path = fw->path;
        char over[32];
        struct request_view rq = {fw->method, fw->path, fw->folded,
                                  http_method_override(m, over, sizeof(over))};
        policy_decide_request(fw->c->pol, &fw->t.h, fw->t.port, fw->c->id, &rq, &fw->d);
        fw->f.rule = fw->d.rule, fw->f.reason = fw->d.reason;
        fw->f.action = policy_decision_name(&fw->d);
        if (fw->d.action != ACTION_DENY)
            return true;
        conn_denial_info(fw->c, fw->c->pol, &fw->t.h, fw->t.port, &rq, &fw->d, &info, fw->hint,
                         sizeof(fw->hint));
    }
    refuse_request(fw, m, &info);
    return false;
}

/* The decision for the URL's destination; false when the client got its
 * answer already (denied, or handed to interception: *keep then says). */
static bool decide(struct forward *fw, const struct http_msg *m, bool *keep)
{
    struct conn *c = fw->c;
    const char *why;
    *keep = false;
    if (parse_url(m, &fw->t, &why) != 0) {
        conn_fail(c, &fw->f, &ERR_BAD_REQUEST, why);
        return false;
    }
    fw->f.host = fw->t.h.name;
    fw->f.port = fw->t.port;
    if (local_host(&fw->t.h)) { /* egressd itself answers: never dialled */
        *keep = local_serve(c, m, fw->t.path, fw->t.path_len);
        return false;
    }
    conn_decide(c, &fw->t.h, fw->t.port, &fw->d, &fw->f);
    fw->f.rule = fw->d.rule;
    fw->f.reason = fw->d.reason;
    fw->f.action = policy_decision_name(&fw->d);
    if (fw->d.action == ACTION_DENY) {
        conn_deny(c, &fw->f, &fw->t.h, fw->t.port, &fw->d);
        return false;
    }
    if (fw->d.action == ACTION_INTERCEPT) { /* what curl and requests send for http:// base URLs */
        *keep = intercept_forward(c, m, &fw->t.h, fw->t.port);
        return false;
    }
    fw->inspected = fw->d.action == ACTION_INSPECT;
    fw->dest_action = fw->d.action; /* what a WebSocket's relay checks again after reloads */
    if (!fw->inspected || decide_request(fw, m))
        return true;
    *keep = fw->keep_after_denial;
    return false;
}

/* Secrets found in the head: refused when one may not go here (403, the
 * connection goes on when it can); false when answered (*keep). */
static bool check_secrets(struct forward *fw, const struct http_msg *m, bool *keep)
{
    struct request_secrets *rs = &fw->secrets;
    secrets_find(rs, fw->c->pol, m, &fw->t.h, fw->t.port, fw->c->id, true);
    if (rs->refused < 0)
        return true;
    secrets_refuse(rs, &fw->t.h, fw->t.port, fw->detail, sizeof(fw->detail), &fw->f);
    fw->d.action = ACTION_DENY, fw->d.audit = false;
    struct http_error_info info = {.e = &ERR_SECRET_NOT_ALLOWED, .detail = fw->detail};
    refuse_request(fw, m, &info);
    *keep = fw->keep_after_denial;
    return false;
}

/* The head toward the origin in o (out), secrets swapped, and a body that
 * secrets are swapped into taken whole; false when answered (*keep). */
static bool prepare(struct forward *fw, const struct http_msg *m, char *out, struct sbuf *o,
                    bool *keep)
{
    struct conn *c = fw->c;
    struct request_secrets *rs = &fw->secrets;
    struct outgoing_head oh = {&fw->t.h, fw->t.port, 80, fw->t.path, fw->t.path_len, &rs->sw};
    if (!check_secrets(fw, m, keep))
        return false;
    fw->ex.secrets_sent = rs->sw.use != 0; /* from here on the head holds them */
    sbuf_init(o, out, OUT_HEAD_MAX);
    exchange_put_head(o, m, &oh);
    if (o->cut) {
        conn_fail(c, &fw->f, &ERR_HEADERS_TOO_LARGE, "request head too large to forward");
        return false;
    }
    bufconn_consume(&c->in, m->head_len); /* m's pointers die here */
    const struct http_error *e =
        secrets_finish_head(rs, &fw->ex, o, now_ms() + c->set->header_timeout_ms, &fw->f);
    if (e != NULL)
        conn_fail(c, &fw->f, e, fw->ex.why);
    return e == NULL;
}

static void log_forward(struct forward *fw)
{
    struct conn *c = fw->c;
    fw->f.src = c->src;
    fw->f.bytes_up = (long long)fw->ex.up_bytes;
    fw->f.bytes_down = (long long)fw->ex.down_bytes;
    metrics_bytes(fw->ex.up_bytes, fw->ex.down_bytes);
    fw->f.duration_ms = now_ms() - c->t0;
    log_event(LOGL_INFO, &fw->f);
    if (fw->inspected)
        metrics_request(&fw->d);
}

bool forward_serve(struct conn *c, const struct http_msg *m)
{
    struct forward *fw = calloc(1, sizeof(*fw));
    char *out = malloc(OUT_HEAD_MAX); /* the heap: a worker's stack stays small */
    struct sbuf o;
    struct http_msg r;
    bool keep = false;
    if (fw == NULL || out == NULL) {
        struct log_fields f = LOG_FIELDS_INIT;
        f.event = "forward";
        conn_fail(c, &f, &ERR_OVERLOADED, "out of memory");
        goto done;
    }
    *fw = (struct forward){.c = c, .f = LOG_FIELDS_INIT};
    fw->f.event = "forward";
    fw->f.action = "deny";
    exchange_begin(&fw->ex, &c->in, NULL, m, (int)c->set->idle_timeout_ms);
    if (!decide(fw, m, &keep) || !prepare(fw, m, out, &o, &keep))
        goto done;
    if (send_and_wait(fw, &o, &r)) {
        keep = answer(fw, &r, out);
        log_forward(fw);
    }
done:
    if (fw != NULL)
        exchange_end(&fw->ex, out, OUT_HEAD_MAX);
    free(out);
    free(fw);
    return keep;
}
