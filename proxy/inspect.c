/*
 * inspect.c - CONNECT tunnels whose requests are decided one by one
 * (DESIGN section 10): a destination that a rule with methods, access or
 * paths names.
 *
 * The destination is decided and dialled (checked addresses, as for a
 * tunnel) before the 200; then the first bytes are peeked like an
 * intercepted connection's, TLS is terminated with a minted leaf when the
 * client speaks it, and the upstream gets TLS too (SNI, verified against
 * upstream_ca, ALPN http/1.1).  Each request is read strictly and refused
 * before any rule when it could be read two ways (dot segments, encoded
 * '/', '\' or '.', a Host that does not name the CONNECT host, an upgrade
 * other than WebSocket, an HTTP/2 preface); then decided by method and
 * path; then relayed through exchange.c, bodies streamed both ways.  A
 * denial is answered in section 5's shape with method and path, and the
 * connection goes on when the request's body could be read.  The upstream
 * connection is kept across requests and dialled again when the origin
 * closes it.  Before each request, the first included, the connection
 * follows reloads: no longer inspected, it is answered 403 and closed.
 */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PATH_VIEW  2048
#define H2_PREFACE "PRI * HTTP/2.0\r\n"

struct inspected {
    struct conn *c;
    const struct host *h;
    uint16_t port, default_port; /* default: 443 over TLS, 80 in plain */
    struct policy_decision d;    /* the connection's: its rule's allowed_ips for dials */
    struct snapshot *cur;        /* c->snap, or a newer one held after a reload */
    unsigned generation;
    struct bufconn client, upstream;
    int upstream_fd; /* -1: not connected */
    int dialled;     /* the socket dialled before the 200, until the first request takes it */
    bool tls;        /* the client spoke TLS, so the upstream does too */
    char *upbuf, *out;
    const char *end; /* why the connection ended */
};

/* One request: what the rules see and the log says. */
struct request {
    struct log_fields f;
    struct exchange ex;
    struct policy_decision d;
    char method[32], path[PATH_VIEW], folded[PATH_VIEW];
    bool logged; /* egressd answered it itself, and said so */
    struct request_secrets secrets;
    char detail[320];
    char hint[POLICY_HINT_MAX];
};

/* ---- the upstream ------------------------------------------------------------------- */

static void upstream_close(struct inspected *ix)
{
    if (ix->upstream_fd < 0)
        return;
    stream_free(ix->upstream.s);
    close(ix->upstream_fd);
    ix->upstream_fd = -1;
    ix->upstream.s = NULL;
}

/* Dial the checked addresses (and TLS when the client spoke it); NULL, or
 * the error to answer with its detail. */
static const struct http_error *upstream_open(struct inspected *ix, struct request *rq,
                                              char *detail, size_t cap)
{
    struct dial_result r = {.fd = ix->dialled};
    char err[256];
    if (ix->dialled >= 0)
        ix->dialled = -1;
    else
        dial(ix->c, ix->h, ix->port, &ix->d, &r);
    if (r.err != NULL) {
        snprintf(detail, cap, "%s", r.detail);
        rq->f.rule = r.rule ? r.rule : rq->f.rule; /* a deny rule naming the address */
        return r.err;
    }
    struct tls_client *tc = ix->c->snap->ic ? ix->c->snap->ic->tls_client : NULL;
    struct stream *s = NULL;
    if (!ix->tls)
        s = stream_plain(r.fd);
    else if (tc == NULL)
        snprintf(err, sizeof(err), "no roots loaded for HTTPS origins (upstream_ca)");
    else
        s = tls_client_connect(tc, r.fd, ix->h->name, now_ms() + ix->c->set->connect_timeout_ms,
                               err, sizeof(err));
    if (s == NULL) {
        close(r.fd);
        snprintf(detail, cap, "%.64s: %.240s", ix->h->name, ix->tls ? err : "out of memory");
        return ix->tls ? &ERR_UPSTREAM_TLS : &ERR_OVERLOADED;
    }
    ix->upstream_fd = r.fd;
    bufconn_init(&ix->upstream, s, ix->upbuf, UP_BUF_SIZE);
    return NULL;
}

/* ---- answers egressd gives itself ---------------------------------------------------- */

/* Refuse or deny a request whose head was read: its body is read and
 * dropped so that the connection can go on; true when it can. */
static bool refuse(struct inspected *ix, struct request *rq, const struct http_msg *m,
                   struct http_error_info *info)
{
    struct conn *c = ix->c;
    info->method = rq->method;
    info->path = rq->f.path;
    bufconn_consume(&ix->client, m->head_len);
    struct bufconn saved = c->in;
    c->in = ix->client; /* the connection's own pieces read the client through c->in */
    info->keep = conn_drain_request(c, m);
    conn_fail_info(c, &rq->f, info);
    ix->client = c->in;
    c->in = saved;
    rq->logged = true;
    return info->keep;
}

/* An answer to a head that could not be read as one: the connection ends. */
static void refuse_head(struct inspected *ix, struct request *rq, const struct http_error *e,
                        const char *detail)
{
    struct http_error_info info = {
        .e = e, .detail = detail, .rule = rq->f.rule, .method = rq->f.method, .path = rq->f.path};
    struct bufconn saved = ix->c->in;
    ix->c->in = ix->client;
    conn_fail_info(ix->c, &rq->f, &info);
    ix->c->in = saved;
    rq->logged = true;
}

/* ---- one request ----------------------------------------------------------------------- */

/* Read and parse the next head; false (answered when it was a bad one)
 * when the connection ends. */
static bool next_head(struct inspected *ix, struct request *rq, struct http_msg *m)
{
    const char *why;
    enum head_status st = bufconn_read_head(&ix->client, now_ms() + ix->c->set->header_timeout_ms);
    if (st == HEAD_TIMEOUT && ix->client.len > 0)
        refuse_head(ix, rq, &ERR_REQUEST_TIMEOUT, "request head not received in time");
    else if (st == HEAD_TOO_LARGE)
        refuse_head(ix, rq, &ERR_HEADERS_TOO_LARGE, "request head larger than 8 KiB");
    else if (st == HEAD_PARTIAL_EOF)
        refuse_head(ix, rq, &ERR_BAD_REQUEST, "the request head ended before its blank line");
    if (st != HEAD_OK) {
        ix->end = st == HEAD_TIMEOUT && ix->client.len == 0 ? "idle" : "closed";
        return false;
    }
    if (ix->client.len >= sizeof(H2_PREFACE) - 1 &&
        memcmp(ix->client.buf, H2_PREFACE, sizeof(H2_PREFACE) - 1) == 0) {
        refuse_head(ix, rq, &ERR_UNSUPPORTED_PROTOCOL, "HTTP/2 is not inspected: use HTTP/1.1");
        ix->end = "HTTP/2 preface";
        return false;
    }
    if (http_parse_request(ix->client.buf, ix->client.len, m, &why) != HTTP_OK) {
        refuse_head(ix, rq, &ERR_BAD_REQUEST, why);
        ix->end = "malformed request";
        return false;
    }
    return true;
}

/* After a reload: still inspected?  Else answered 403 (false). */
static bool follow_reload(struct inspected *ix, struct request *rq)
{
    struct policy_decision d;
    struct snapshot *s = conn_redecide(ix->c, ix->h, ix->port, &ix->generation, &d);
    if (s == NULL)
        return true;
    if (d.action == ACTION_INSPECT) {
        if (ix->cur != ix->c->snap)
            snapshot_unref(ix->cur);
        ix->cur = s;
        return true;
    }
    snapshot_unref(s);
    refuse_head(ix, rq, &ERR_POLICY_DENIED,
                "this destination is no longer inspected (the configuration was reloaded)");
    ix->end = "closed by reload: no longer inspected";
    return false;
}

/* Checks before any rule (DESIGN section 10); NULL when the request may be
 * decided, else the error, with *why. */
static const struct http_error *unsafe(struct inspected *ix, struct request *rq,
                                       const struct http_msg *m, const char **why)
{
    const struct http_header *host = http_header_find(m, "host");
    if (m->target_len == 0 || m->target[0] != '/') {
        *why = "inside a tunnel a request names its path only (origin form)";
        return &ERR_BAD_REQUEST;
    }
    if (http_path_check(m->target, m->target_len, why) != 0 ||
        http_path_view(m->target, m->target_len, rq->path, sizeof(rq->path), rq->folded,
                       sizeof(rq->folded), why) != 0)
        return &ERR_BAD_REQUEST;
    rq->f.path = rq->path;
    if (host != NULL &&
        !host_header_names(host->value, host->value_len, ix->h, ix->port, ix->default_port)) {
        *why = "the Host header does not name the tunnel's destination";
        return &ERR_MISDIRECTED;
    }
    if (http_header_find(m, "upgrade") != NULL && !rq->ex.websocket) {
        *why = "only WebSocket upgrades (with a Sec-WebSocket-Key) pass";
        return &ERR_UNSUPPORTED_PROTOCOL;
    }
    return NULL;
}

/* The decision for one request; false when it was answered by egressd
 * (*keep: may the connection go on). */
static bool decide(struct inspected *ix, struct request *rq, const struct http_msg *m, bool *keep)
{
    const char *why = NULL;
    const struct http_error *e = unsafe(ix, rq, m, &why);
    struct http_error_info info = {.e = e, .detail = why};
    if (e == NULL) {
        char over[32];
        struct request_view view = {rq->method, rq->path, rq->folded,
                                    http_method_override(m, over, sizeof(over))};
        policy_decide_request(ix->cur->pol, ix->h, ix->port, ix->c->id, &view, &rq->d);
        rq->f.action = policy_decision_name(&rq->d);
        rq->f.rule = rq->d.rule;
        rq->f.reason = rq->d.reason;
        if (rq->d.action != ACTION_DENY)
            return true;
        conn_denial_info(ix->c, ix->cur->pol, ix->h, ix->port, &view, &rq->d, &info, rq->hint,
                         sizeof(rq->hint));
    }
    *keep = refuse(ix, rq, m, &info);
    return false;
}

/* Up, with one more try on a fresh upstream when the kept one was closed
 * and the request has no body to send again; false when answered. */
static bool send_and_wait(struct inspected *ix, struct request *rq, const struct sbuf *o,
                          struct http_msg *r)
{
    for (int attempt = 0;; attempt++) {
        bool reused = ix->upstream_fd >= 0, stale = false;
        char detail[320];
        const struct http_error *err =
            reused ? NULL : upstream_open(ix, rq, detail, sizeof(detail));
        if (err != NULL) {
            refuse_head(ix, rq, err, detail);
            return false;
        }
        rq->ex.upstream = &ix->upstream;
        enum send_result sr = exchange_send(&rq->ex, o->buf, o->len, reused);
        if (sr == SENT)
            err = exchange_response(&rq->ex, r, &stale);
        if (reused && attempt == 0 &&
            (sr == UPSTREAM_STALE || (sr == SENT && stale && rq->ex.framing == BODY_NONE))) {
            upstream_close(ix);
            continue;
        }
        if (sr == SENT && err == NULL)
            return true;
        upstream_close(ix);
        rq->f.reason = rq->ex.why;
        err = exchange_client_error(sr, err);
        if (err != NULL)
            refuse_head(ix, rq, err, rq->ex.why);
        return false;
    }
}

/* A WebSocket after the origin's 101: both ways, raw, while still allowed. */
static void upgraded(struct inspected *ix, struct request *rq)
{
    struct relay_stats st;
    struct conn_recheck rc = {ix->c,           ix->h,          ix->port,
                              ix->upstream_fd, ix->generation, ACTION_INSPECT};
    struct relay_check check = {conn_still_allowed, &rc};
    exchange_upgraded(&rq->ex, ix->c->pipes, &check, &st);
    rq->ex.up_bytes += st.up;
    rq->ex.down_bytes += st.down;
    ix->end = st.end;
}

/* Secrets found in the head: refused when one may not go here (403, the
 * connection goes on); false when answered, with *keep. */
static bool check_secrets(struct inspected *ix, struct request *rq, const struct http_msg *m,
                          bool *keep)
{
    struct request_secrets *rs = &rq->secrets;
    secrets_find(rs, ix->cur->pol, m, ix->h, ix->port, ix->c->id, !ix->tls);
    if (rs->refused < 0)
        return true;
    secrets_refuse(rs, ix->h, ix->port, rq->detail, sizeof(rq->detail), &rq->f);
    rq->d.action = ACTION_DENY, rq->d.audit = false;
    struct http_error_info info = {.e = &ERR_SECRET_NOT_ALLOWED, .detail = rq->detail};
    *keep = refuse(ix, rq, m, &info);
    return false;
}

/* The head toward the origin in o, secrets swapped, and a body that
 * secrets are swapped into taken whole; false when answered (*keep). */
static bool prepare_request(struct inspected *ix, struct request *rq, const struct http_msg *m,
                            struct sbuf *o, bool *keep)
{
    struct request_secrets *rs = &rq->secrets;
    struct outgoing_head oh = {ix->h,     ix->port,      ix->default_port,
                               m->target, m->target_len, &rs->sw};
    if (!check_secrets(ix, rq, m, keep))
        return false;
    rq->ex.secrets_sent = rs->sw.use != 0; /* from here on the head holds them */
    sbuf_init(o, ix->out, OUT_HEAD_MAX);
    exchange_put_head(o, m, &oh);
    if (o->cut) {
        struct http_error_info info = {.e = &ERR_HEADERS_TOO_LARGE,
                                       .detail = "request head too large to forward"};
        *keep = refuse(ix, rq, m, &info);
        return false;
    }
    bufconn_consume(&ix->client, m->head_len); /* m's pointers die here */
    const struct http_error *e =
        secrets_finish_head(rs, &rq->ex, o, now_ms() + ix->c->set->header_timeout_ms, &rq->f);
    if (e != NULL)
        refuse_head(ix, rq, e, rq->ex.why);
    *keep = false;
    return e == NULL;
}

/* Relay an allowed request; true when the connection may carry another. */
static bool relay_request(struct inspected *ix, struct request *rq, struct http_msg *m)
{
    struct sbuf o;
    bool keep = false;
    if (!prepare_request(ix, rq, m, &o, &keep))
        return keep;
    struct http_msg r;
    if (!send_and_wait(ix, rq, &o, &r))
        return false;
    keep = exchange_relay(&rq->ex, &r, ix->out, OUT_HEAD_MAX);
    rq->f.status = rq->ex.status; /* the origin's, or egressd's 502 */
    if (rq->ex.status == 101) {
        upgraded(ix, rq);
        keep = false;
    } else if (!rq->ex.upstream_keep) {
        upstream_close(ix); /* dialled again for the next request */
    }
    if (!keep && ix->end == NULL)
        ix->end = rq->ex.why ? rq->ex.why : "the exchange ended the connection";
    return keep;
}

/* The line of a decided request (one egressd answered itself was logged
 * then); counted either way. */
static void log_request(struct inspected *ix, struct request *rq)
{
    rq->f.src = ix->c->src;
    rq->f.bytes_up = (long long)rq->ex.up_bytes;
    rq->f.bytes_down = (long long)rq->ex.down_bytes;
    rq->f.duration_ms = now_ms() - ix->c->t0;
    if (!rq->logged)
        log_event(LOGL_INFO, &rq->f);
    metrics_bytes(rq->ex.up_bytes, rq->ex.down_bytes);
    metrics_request(&rq->d);
}

/* One request, from its head to its log line; true: the next one may come. */
static bool serve_request(struct inspected *ix)
{
    struct request *rq = calloc(1, sizeof(*rq));
    struct http_msg m;
    bool keep = false;
    if (rq == NULL) {
        ix->end = "out of memory";
        return false;
    }
    rq->f = (struct log_fields)LOG_FIELDS_INIT;
    rq->f.event = "request", rq->f.host = ix->h->name, rq->f.port = ix->port;
    rq->f.action = "deny";
    ix->c->t0 = now_ms();
    if (next_head(ix, rq, &m) &&
        follow_reload(ix, rq)) { /* the first too: a reload since the 200 */
        snprintf(rq->method, sizeof(rq->method), "%.*s", (int)m.method_len, m.method);
        rq->f.method = rq->method;
        exchange_begin(&rq->ex, &ix->client, &ix->upstream, &m, (int)ix->c->set->idle_timeout_ms);
        if (decide(ix, rq, &m, &keep))
            keep = relay_request(ix, rq, &m);
        log_request(ix, rq);
        exchange_end(&rq->ex, ix->out, OUT_HEAD_MAX);
    }
    free(rq);
    return keep;
}

/* ---- the connection ------------------------------------------------------------------- */

void inspect_tunnel(struct conn *c, const struct host *h, uint16_t port,
                    const struct policy_decision *d, struct log_fields *f, int upstream_fd)
{
    bool ok;
    struct inspected ix = {.c = c,
                           .h = h,
                           .port = port,
                           .d = *d,
                           .cur = c->snap,
                           .generation = c->generation,
                           .upstream_fd = -1,
                           .dialled = upstream_fd};
    ix.upbuf = malloc(UP_BUF_SIZE);
    ix.out = malloc(OUT_HEAD_MAX);
    if (ix.upbuf == NULL || ix.out == NULL || c->snap->ic == NULL) {
        conn_fail(c, f, &ERR_OVERLOADED, "out of memory");
        goto done;
    }
    f->action = policy_decision_name(d);
    struct stream *tls = tunnel_accept_client(c, h, c->snap->ic->tls_server, f, &ok);
    if (!ok)
        goto done;
    ix.tls = tls != NULL;
    ix.default_port = ix.tls ? 443 : 80;
    ix.client = c->in; /* plain: the client's stream and what came with the head */
    if (tls != NULL)
        bufconn_init(&ix.client, tls, c->buf, HTTP_HEAD_MAX);
    while (serve_request(&ix))
        ;
    upstream_close(&ix);
    stream_free(tls); /* before c->snap goes: the session uses its CA's configuration */
    f->reason = ix.end ? ix.end : "closed";
    f->duration_ms = now_ms() - c->t0;
    log_event(LOGL_INFO, f);
done:
    if (ix.dialled >= 0)
        close(ix.dialled);
    if (ix.cur != c->snap)
        snapshot_unref(ix.cur);
    free(ix.upbuf);
    free(ix.out);
}
