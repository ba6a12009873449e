/*
 * forward.c - absolute-form http:// requests (a plain HTTP forward proxy).
 *
 * The request gets the same policy decision and address check as a
 * tunnel, then goes upstream in origin form with exactly one Host (from
 * the URL, as RFC 9112 asks of proxies), without hop-by-hop and Proxy-*
 * fields, with a Via.  Bodies move through http/'s pump as they arrive,
 * their framing checked (never re-framed) so that egressd knows where each
 * message ends: that is what lets it keep the client connection alive
 * between requests, and reuse the upstream connection when the next
 * request goes to the same place.  An HTTP/1.0 client's request goes
 * upstream as HTTP/1.0, so the answer never comes chunked to a client that
 * cannot read it.
 */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define UP_BUF_SIZE  (64 * 1024)
#define OUT_HEAD_MAX (HTTP_RESP_MAX + 512)

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

/* ---- heads ------------------------------------------------------------------ */

static void build_request(struct sbuf *o, const struct http_msg *m, const struct target *t)
{
    sbuf_add(o, m->method, m->method_len);
    sbuf_str(o, t->path_len == 0 || t->path[0] != '/' ? " /" : " ");
    sbuf_add(o, t->path, t->path_len);
    sbuf_printf(o, " HTTP/1.%d\r\nHost: %s%s%s", m->minor, t->h.kind == HOST_IPV6 ? "[" : "",
                t->h.name, t->h.kind == HOST_IPV6 ? "]" : "");
    if (t->port != 80)
        sbuf_printf(o, ":%u", t->port);
    sbuf_str(o, "\r\n");
    http_put_end_to_end(o, m);
    sbuf_str(o, VIA_HEADER "\r\n");
}

static void build_response(struct sbuf *o, const char *status_line, size_t sl_len,
                           const struct http_msg *r, bool keep)
{
    sbuf_str(o, "HTTP/1.1");
    sbuf_add(o, status_line + 8, sl_len - 8); /* " 200 OK\r\n": the origin's own words */
    http_put_end_to_end(o, r);
    sbuf_str(o, VIA_HEADER);
    sbuf_str(o, keep ? "\r\n" : "Connection: close\r\n\r\n");
}

/* "why; the upstream sent ..." with its first bytes printable-escaped. */
static void describe_bytes(const char *why, const char *p, size_t n, char *out, size_t cap)
{
    struct sbuf b;
    sbuf_init(&b, out, cap);
    sbuf_printf(&b, "%s; the upstream sent \"", why);
    for (size_t i = 0; i < n && i < 32; i++) {
        unsigned char ch = (unsigned char)p[i];
        sbuf_printf(&b, ch >= 0x20 && ch < 0x7f && ch != '"' ? "%c" : "\\x%02x", ch);
    }
    sbuf_str(&b, "\"");
}

/* ---- one request ------------------------------------------------------------ */

struct exchange {
    struct conn *c;
    const struct http_msg *m; /* its pointers die once the head is consumed */
    struct target t;
    struct policy_decision d;
    struct log_fields f;
    enum http_framing framing; /* of the request body, kept past m */
    uint64_t length;
    uint64_t up_bytes, down_bytes;
    bool is_head, expect_continue, client_close;
    int minor;
    const char *why;
    char detail[320];
};

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

/* A connected upstream for x->t: the kept one if it goes to the same place. */
static const struct http_error *upstream_get(struct exchange *x, bool *reused)
{
    struct conn *c = x->c;
    char key[sizeof(c->upstream->key)];
    snprintf(key, sizeof(key), "%s:%u", x->t.h.name, x->t.port);
    if (c->upstream == NULL && (c->upstream = malloc(sizeof(*c->upstream))) != NULL)
        c->upstream->fd = -1;
    struct upstream *u = c->upstream;
    if (u == NULL) {
        snprintf(x->detail, sizeof(x->detail), "out of memory");
        return &ERR_UPSTREAM_ERROR;
    }
    *reused = u->fd >= 0 && strcmp(u->key, key) == 0;
    if (*reused)
        return NULL;
    upstream_close(c);
    struct dial_result r;
    dial(c, &x->t.h, x->t.port, &x->d, &r);
    if (r.err != NULL) {
        snprintf(x->detail, sizeof(x->detail), "%s", r.detail);
        x->f.rule = r.rule ? r.rule : x->f.rule;
        return r.err;
    }
    struct stream *s = stream_plain(r.fd);
    if (s == NULL) {
        close(r.fd);
        snprintf(x->detail, sizeof(x->detail), "out of memory");
        return &ERR_UPSTREAM_ERROR;
    }
    u->fd = r.fd;
    bufconn_init(&u->in, s, u->buf, sizeof(u->buf));
    snprintf(u->key, sizeof(u->key), "%s", key);
    return NULL;
}

/* How sending a request went.  The client's failures while its body moves
 * come before any response: those it can still read get their answer. */
enum send_result { SENT, CLIENT_BAD, CLIENT_SLOW, CLIENT_GONE, UPSTREAM_FAILED, UPSTREAM_STALE };

static enum send_result body_result(enum pump_result pr)
{
    switch (pr) {
    case PUMP_DONE:
        return SENT;
    case PUMP_MALFORMED:
    case PUMP_CUT:
    case PUMP_TOO_LARGE:
        return CLIENT_BAD;
    case PUMP_TIMEOUT:
        return CLIENT_SLOW;
    case PUMP_READ_ERROR:
        return CLIENT_GONE;
    case PUMP_SINK_FAILED:
        break;
    }
    return UPSTREAM_FAILED;
}

/* Head (already built) and body upstream; 100 Continue to the client. */
static enum send_result send_request(struct exchange *x, const struct sbuf *o, bool reused)
{
    struct conn *c = x->c;
    struct upstream *u = c->upstream;
    int io_ms = (int)c->set->idle_timeout_ms;
    if (stream_write_all(u->in.s, o->buf, o->len, now_ms() + io_ms) != IO_OK) {
        x->why = "upstream closed the connection";
        return reused ? UPSTREAM_STALE : UPSTREAM_FAILED;
    }
    if (x->expect_continue && x->minor == 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (stream_write_all(c->in.s, cont, sizeof(cont) - 1, now_ms() + io_ms) != IO_OK) {
            x->why = "client went away";
            return CLIENT_GONE;
        }
    }
    /* a streamed body may take long, but never idle long */
    struct body_limits lim = {.idle_ms = io_ms};
    struct stream_sink up = {u->in.s, io_ms};
    struct body_sink sink = {stream_sink_put, &up};
    return body_result(
        http_pump_body(&c->in, x->framing, x->length, &lim, &sink, &x->up_bytes, &x->why));
}

/* The final response head; NULL, or the error to answer (*stale: the kept
 * connection was closed before it said anything). */
static const struct http_error *read_response(struct exchange *x, struct http_msg *r, bool *stale)
{
    struct bufconn *in = &x->c->upstream->in;
    int64_t deadline = now_ms() + x->c->set->idle_timeout_ms;
    enum response_status st = bufconn_read_response(in, x->is_head, r, deadline, &x->why);
    *stale = st == RESPONSE_CLOSED;
    if (st == RESPONSE_MALFORMED) {
        describe_bytes(x->why, in->buf, in->len, x->detail, sizeof(x->detail));
        x->why = x->detail; /* what the upstream sent, for the log */
    }
    if (st == RESPONSE_OK && r->status == 101) {
        x->why = "upstream switched protocols unasked";
        return &ERR_UPSTREAM_ERROR;
    }
    return st == RESPONSE_OK        ? NULL
           : st == RESPONSE_TIMEOUT ? &ERR_UPSTREAM_TIMEOUT
                                    : &ERR_UPSTREAM_ERROR;
}

/* Send the response head (built in out) and body to the client; true if
 * both ends stay open. */
static bool relay_response(struct exchange *x, const struct http_msg *r, char *out)
{
    struct conn *c = x->c;
    struct bufconn *in = &c->upstream->in;
    struct sbuf o;
    bool keep = x->minor == 1 && !x->client_close && r->framing != BODY_UNTIL_CLOSE;
    bool upstream_keep = r->minor == 1 && !r->conn_close && r->framing != BODY_UNTIL_CLOSE;
    const char *lf = memchr(in->buf, '\n', r->head_len);
    sbuf_init(&o, out, OUT_HEAD_MAX);
    build_response(&o, in->buf, (size_t)(lf + 1 - in->buf), r, keep);
    if (o.cut) {
        x->why = "response head too large to forward";
        return false;
    }
    enum http_framing framing = r->framing;
    uint64_t length = r->content_length;
    bufconn_consume(in, r->head_len); /* r's pointers die here */
    int io_ms = (int)c->set->idle_timeout_ms;
    struct body_limits lim = {.idle_ms = io_ms};
    struct stream_sink down = {c->in.s, io_ms};
    struct body_sink sink = {stream_sink_put, &down};
    if (stream_write_all(c->in.s, o.buf, o.len, now_ms() + io_ms) != IO_OK ||
        http_pump_body(in, framing, length, &lim, &sink, &x->down_bytes, &x->why) != PUMP_DONE ||
        in->len > 0) /* the upstream said more than its message */
        return false;
    if (!upstream_keep)
        upstream_close(c);
    return keep;
}

/* After a failed send: answered (false), or worth a fresh try (true). */
static bool send_failed(struct exchange *x, enum send_result rc, const struct http_error *err)
{
    upstream_close(x->c); /* it has part of a request: never reused */
    x->f.reason = x->why;
    if (rc == CLIENT_GONE) {
        x->f.src = x->c->src;
        log_event(LOGL_INFO, &x->f);
        return false;
    }
    if (rc == CLIENT_BAD || rc == CLIENT_SLOW)
        err = rc == CLIENT_BAD ? &ERR_BAD_REQUEST : &ERR_REQUEST_TIMEOUT;
    conn_fail(x->c, &x->f, err ? err : &ERR_UPSTREAM_ERROR, x->why);
    return false;
}

/* The request (its head built in o) to the upstream, and the answer back;
 * o's buffer is reused for the answer's head. */
static bool exchange_run(struct exchange *x, struct sbuf *o)
{
    struct http_msg r;
    for (int attempt = 0;; attempt++) {
        bool reused, stale = false;
        const struct http_error *err = upstream_get(x, &reused);
        if (err != NULL) {
            x->f.reason = err->code;
            conn_fail(x->c, &x->f, err, x->detail);
            return false;
        }
        enum send_result rc = send_request(x, o, reused);
        if (rc == SENT)
            err = read_response(x, &r, &stale);
        bool retry = reused && attempt == 0 &&
                     (rc == UPSTREAM_STALE || (rc == SENT && stale && x->framing == BODY_NONE));
        if (retry) {
            upstream_close(x->c); /* the origin closed a kept connection: once more, fresh */
            continue;
        }
        if (rc != SENT || err != NULL)
            return send_failed(x, rc, err);
        break;
    }
    x->f.status = r.status;
    bool keep = relay_response(x, &r, o->buf);
    if (!keep)
        upstream_close(x->c);
    x->f.reason = keep || x->why == NULL ? "allowed by rule" : x->why;
    return keep;
}

/* The decision for the URL's destination; false when the client got its
 * answer already (denied, or handed to interception: *keep then says). */
static bool decide(struct conn *c, const struct http_msg *m, struct exchange *x, bool *keep)
{
    *keep = false;
    if (parse_url(m, &x->t, &x->why) != 0) {
        conn_fail(c, &x->f, &ERR_BAD_REQUEST, x->why);
        return false;
    }
    x->f.host = x->t.h.name;
    x->f.port = x->t.port;
    conn_decide(c, &x->t.h, x->t.port, &x->d, &x->f);
    x->f.rule = x->d.rule;
    x->f.reason = x->d.reason;
    if (x->d.action == ACTION_DENY) {
        conn_fail(c, &x->f, &ERR_POLICY_DENIED, x->d.reason);
        return false;
    }
    if (x->d.action == ACTION_INTERCEPT) { /* what curl and requests send for http:// base URLs */
        *keep = intercept_forward(c, m, &x->t.h, x->t.port);
        return false;
    }
    return true;
}

bool forward_serve(struct conn *c, const struct http_msg *m)
{
    struct exchange x = {.c = c, .m = m, .f = LOG_FIELDS_INIT};
    struct sbuf o;
    bool keep;
    x.f.event = "forward";
    x.f.action = "deny";
    if (!decide(c, m, &x, &keep))
        return keep;
    x.f.action = "allow";
    char *out = malloc(OUT_HEAD_MAX); /* the heap: a worker's stack stays small */
    if (out == NULL) {
        conn_fail(c, &x.f, &ERR_OVERLOADED, "out of memory");
        return false;
    }
    sbuf_init(&o, out, OUT_HEAD_MAX);
    build_request(&o, m, &x.t);
    if (o.cut) {
        free(out);
        conn_fail(c, &x.f, &ERR_HEADERS_TOO_LARGE, "request head too large to forward");
        return false;
    }
    x.is_head = http_method_is(m, "HEAD");
    x.framing = m->framing, x.length = m->content_length;
    x.expect_continue = m->expect_continue, x.minor = m->minor, x.client_close = m->conn_close;
    bufconn_consume(&c->in, m->head_len); /* m's pointers die here */
    keep = exchange_run(&x, &o);
    free(out);
    if (x.f.status >= 0) {
        x.f.src = c->src;
        x.f.bytes_up = (long long)x.up_bytes;
        x.f.bytes_down = (long long)x.down_bytes;
        metrics_bytes(x.up_bytes, x.down_bytes);
        x.f.duration_ms = now_ms() - c->t0;
        log_event(LOGL_INFO, &x.f);
    }
    return keep;
}
