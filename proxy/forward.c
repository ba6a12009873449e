/*
 * forward.c - absolute-form http:// requests (a plain HTTP forward proxy).
 *
 * The request gets the same policy decision and address check as a
 * tunnel, then goes upstream in origin form with exactly one Host (from
 * the URL, as RFC 9112 asks of proxies), without hop-by-hop and Proxy-*
 * fields, with a Via.  Bodies move as they arrive, with their framing
 * checked (never re-framed) so that egressd knows where each message ends:
 * that is what lets it keep the client connection alive between requests,
 * and reuse the upstream connection when the next request goes to the same
 * place.  An HTTP/1.0 client's request goes upstream as HTTP/1.0, so the
 * answer never comes chunked to a client that cannot read it.
 */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define UP_BUF_SIZE   (64 * 1024)
#define RESP_HEAD_MAX (32 * 1024)
#define OUT_HEAD_MAX  (RESP_HEAD_MAX + 512)

/* A socket with the bytes read from it but not yet used. */
struct bufsock {
    int fd;
    struct stream *st; /* the same socket, for http_read_head */
    char *buf;
    size_t cap, len;
};

struct upstream {
    struct bufsock s;
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

static bool listed_in_connection(const struct http_msg *m, const struct http_header *h)
{
    char name[64];
    if (h->name_len >= sizeof(name))
        return false;
    memcpy(name, h->name, h->name_len);
    name[h->name_len] = '\0';
    for (size_t i = 0; i < m->n_headers; i++)
        if (http_name_is(&m->headers[i], "connection") &&
            http_list_has(m->headers[i].value, m->headers[i].value_len, name))
            return true;
    return false;
}

/* Headers that are not passed on as they came: hop-by-hop ones, and the
 * framing headers (Content-Length, Transfer-Encoding, Host), which egressd
 * writes itself from what it parsed, so that a client naming one in its
 * Connection header cannot make the next hop frame the message differently. */
static bool hop_by_hop(const struct http_msg *m, const struct http_header *h)
{
    static const char *const names[] = {"connection",
                                        "keep-alive",
                                        "proxy-connection",
                                        "proxy-authorization",
                                        "proxy-authenticate",
                                        "te",
                                        "trailer",
                                        "transfer-encoding",
                                        "content-length",
                                        "upgrade",
                                        "host"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (http_name_is(h, names[i]))
            return true;
    if (m->expect_continue && http_name_is(h, "expect"))
        return true; /* egressd answers 100 Continue itself */
    return listed_in_connection(m, h);
}

struct out {
    char buf[OUT_HEAD_MAX];
    size_t n;
};

static void add(struct out *o, const char *p, size_t len)
{
    if (o->n + len < sizeof(o->buf)) {
        memcpy(o->buf + o->n, p, len);
        o->n += len;
    } else {
        o->n = sizeof(o->buf); /* marks overflow */
    }
}

static void add_str(struct out *o, const char *s)
{
    add(o, s, strlen(s));
}

static void add_end_to_end(struct out *o, const struct http_msg *m)
{
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http_header *h = &m->headers[i];
        if (hop_by_hop(m, h))
            continue;
        add(o, h->name, h->name_len);
        add_str(o, ": ");
        add(o, h->value, h->value_len);
        add_str(o, "\r\n");
    }
    add_str(o, VIA_HEADER);
    if (m->framing == BODY_CHUNKED) {
        add_str(o, "Transfer-Encoding: chunked\r\n");
    } else if (m->has_length) {
        char line[48];
        snprintf(line, sizeof(line), "Content-Length: %llu\r\n",
                 (unsigned long long)m->content_length);
        add_str(o, line);
    }
}

static void build_request(struct out *o, const struct http_msg *m, const struct target *t)
{
    char line[64];
    o->n = 0;
    add(o, m->method, m->method_len);
    add_str(o, " ");
    if (t->path_len == 0 || t->path[0] != '/')
        add_str(o, "/");
    add(o, t->path, t->path_len);
    snprintf(line, sizeof(line), " HTTP/1.%d\r\nHost: ", m->minor);
    add_str(o, line);
    add_str(o, t->h.kind == HOST_IPV6 ? "[" : "");
    add_str(o, t->h.name);
    add_str(o, t->h.kind == HOST_IPV6 ? "]" : "");
    if (t->port != 80) {
        snprintf(line, sizeof(line), ":%u", t->port);
        add_str(o, line);
    }
    add_str(o, "\r\n");
    add_end_to_end(o, m);
    add_str(o, "\r\n");
}

static void build_response(struct out *o, const char *status_line, size_t sl_len,
                           const struct http_msg *r, bool keep)
{
    o->n = 0;
    add_str(o, "HTTP/1.1");
    add(o, status_line + 8, sl_len - 8); /* " 200 OK\r\n": the origin's own words */
    add_end_to_end(o, r);
    if (!keep)
        add_str(o, "Connection: close\r\n");
    add_str(o, "\r\n");
}

/* ---- bodies ----------------------------------------------------------------- */

static void bufsock_consume(struct bufsock *s, size_t n)
{
    memmove(s->buf, s->buf + n, s->len - n);
    s->len -= n;
}

/* How moving a body ended. */
enum move_result {
    MOVE_DONE,
    MOVE_SRC_MALFORMED, /* src broke the framing */
    MOVE_SRC_CUT,       /* src ended (EOF) before the body did */
    MOVE_SRC_STALLED,   /* nothing from src for io_ms */
    MOVE_SRC_ERROR,     /* reading src failed (reset) */
    MOVE_DST_FAILED,    /* dst stopped taking bytes */
};

/* Move one message body from src (buffered bytes first) to dst, *why set
 * for anything but MOVE_DONE. */
static enum move_result relay_body(struct bufsock *src, int dst, const struct http_msg *m,
                                   int io_ms, uint64_t *moved, const char **why)
{
    uint64_t remaining = m->content_length;
    struct chunked ch;
    bool done = m->framing == BODY_NONE || (m->framing == BODY_LENGTH && remaining == 0);
    chunked_init(&ch, 0);
    while (!done) {
        if (src->len == 0) { /* a streamed body may take long, but never idle long */
            enum io_result n = fd_read(src->fd, src->buf, src->cap, &src->len, now_ms() + io_ms);
            if (n == IO_EOF && m->framing == BODY_UNTIL_CLOSE)
                return MOVE_DONE;
            if (n != IO_OK) {
                *why = n == IO_EOF       ? "body cut short"
                       : n == IO_TIMEOUT ? "body stalled"
                                         : "read error";
                return n == IO_EOF       ? MOVE_SRC_CUT
                       : n == IO_TIMEOUT ? MOVE_SRC_STALLED
                                         : MOVE_SRC_ERROR;
            }
        }
        size_t take = src->len;
        if (m->framing == BODY_LENGTH) {
            take = take < remaining ? take : (size_t)remaining;
            remaining -= take;
            done = remaining == 0;
        } else if (m->framing == BODY_CHUNKED) {
            ssize_t n = chunked_scan(&ch, src->buf, src->len, &done, why);
            if (n < 0)
                return MOVE_SRC_MALFORMED;
            take = (size_t)n;
        }
        if (fd_write_all(dst, src->buf, take, now_ms() + io_ms) != IO_OK) {
            *why = "peer stopped reading";
            return MOVE_DST_FAILED;
        }
        *moved += take;
        bufsock_consume(src, take);
    }
    return MOVE_DONE;
}

/* "why: starts with ..." with the first bytes printable-escaped. */
static void describe_bytes(const char *why, const char *p, size_t n, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "%s; the upstream sent \"", why);
    for (size_t i = 0; i < n && i < 32 && o + 6 < cap; i++) {
        unsigned char ch = (unsigned char)p[i];
        o += (size_t)snprintf(out + o, cap - o,
                              ch >= 0x20 && ch < 0x7f && ch != '"' ? "%c" : "\\x%02x", ch);
    }
    snprintf(out + o, cap - o, "\"");
}

/* ---- one request ------------------------------------------------------------ */

struct exchange {
    struct conn *c;
    const struct http_msg *m; /* its pointers die once the head is consumed */
    struct target t;
    struct policy_decision d;
    struct log_fields f;
    uint64_t up_bytes, down_bytes;
    bool is_head;
    const char *why;
    char detail[320];
};

static void upstream_close(struct conn *c)
{
    if (c->upstream != NULL && c->upstream->s.fd >= 0) {
        stream_free(c->upstream->s.st);
        close(c->upstream->s.fd);
        c->upstream->s.fd = -1;
        c->upstream->s.st = NULL;
    }
}

void forward_release(struct conn *c)
{
    upstream_close(c);
    free(c->upstream);
    c->upstream = NULL;
}

/* A connected upstream for x->t: the kept one if it goes to the same place. */
static const struct proxy_error *upstream_get(struct exchange *x, bool *reused)
{
    struct conn *c = x->c;
    char key[sizeof(c->upstream->key)];
    snprintf(key, sizeof(key), "%s:%u", x->t.h.name, x->t.port);
    if (c->upstream == NULL) {
        c->upstream = malloc(sizeof(*c->upstream));
        if (c->upstream == NULL) {
            snprintf(x->detail, sizeof(x->detail), "out of memory");
            return &ERR_UPSTREAM_ERROR;
        }
        c->upstream->s = (struct bufsock){-1, NULL, c->upstream->buf, UP_BUF_SIZE, 0};
    }
    struct upstream *u = c->upstream;
    *reused = u->s.fd >= 0 && strcmp(u->key, key) == 0;
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
    u->s.st = stream_plain(r.fd);
    if (u->s.st == NULL) {
        close(r.fd);
        snprintf(x->detail, sizeof(x->detail), "out of memory");
        return &ERR_UPSTREAM_ERROR;
    }
    u->s.fd = r.fd;
    u->s.len = 0;
    snprintf(u->key, sizeof(u->key), "%s", key);
    return NULL;
}

/* How sending a request went.  The client's failures while its body moves
 * come before any response: those it can still read get their answer. */
enum { SENT, CLIENT_BAD, CLIENT_SLOW, CLIENT_GONE, UPSTREAM_FAILED, UPSTREAM_STALE };

/* Head (already built) and body upstream; 100 Continue to the client. */
static int send_request(struct exchange *x, const struct out *o, bool reused)
{
    struct conn *c = x->c;
    struct upstream *u = c->upstream;
    int io_ms = (int)c->set->idle_timeout_ms;
    if (fd_write_all(u->s.fd, o->buf, o->n, now_ms() + io_ms) != IO_OK) {
        x->why = "upstream closed the connection";
        return reused ? UPSTREAM_STALE : UPSTREAM_FAILED;
    }
    if (x->m->expect_continue && x->m->minor == 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (fd_write_all(c->fd, cont, sizeof(cont) - 1, now_ms() + io_ms) != IO_OK) {
            x->why = "client went away";
            return CLIENT_GONE;
        }
    }
    struct bufsock cs = {c->fd, c->cs, c->buf, sizeof(c->buf), c->len};
    enum move_result rc = relay_body(&cs, u->s.fd, x->m, io_ms, &x->up_bytes, &x->why);
    c->len = cs.len;
    switch (rc) {
    case MOVE_DONE:
        return SENT;
    case MOVE_SRC_MALFORMED:
    case MOVE_SRC_CUT:
        return CLIENT_BAD;
    case MOVE_SRC_STALLED:
        return CLIENT_SLOW;
    case MOVE_SRC_ERROR:
        return CLIENT_GONE;
    case MOVE_DST_FAILED:
        break;
    }
    return UPSTREAM_FAILED;
}

/* The final response head (1xx skipped); NULL, or the error to answer. */
static const struct proxy_error *read_response(struct exchange *x, struct http_msg *r, bool is_head,
                                               bool *stale)
{
    struct bufsock *s = &x->c->upstream->s;
    *stale = false;
    for (;;) {
        int64_t deadline = now_ms() + x->c->set->idle_timeout_ms;
        enum head_status st = http_read_head(s->st, s->buf, RESP_HEAD_MAX, &s->len, deadline);
        if (st != HEAD_OK) {
            *stale = st == HEAD_EOF || st == HEAD_ERROR;
            x->why = st == HEAD_TIMEOUT     ? "upstream sent no response in time"
                     : st == HEAD_TOO_LARGE ? "upstream response head too large"
                                            : "upstream closed without a response";
            return st == HEAD_TIMEOUT ? &ERR_UPSTREAM_TIMEOUT : &ERR_UPSTREAM_ERROR;
        }
        if (http_parse_response(s->buf, s->len, is_head, r, &x->why) != HTTP_OK) {
            describe_bytes(x->why, s->buf, s->len, x->detail, sizeof(x->detail));
            x->why = x->detail; /* what the upstream sent, for the log */
            return &ERR_UPSTREAM_ERROR;
        }
        if (r->status == 101) {
            x->why = "upstream switched protocols unasked";
            return &ERR_UPSTREAM_ERROR;
        }
        if (r->status >= 200)
            return NULL;
        bufsock_consume(s, r->head_len); /* 1xx: informational, not forwarded */
    }
}

/* Send the response head and body to the client; true if both ends stay open. */
static bool relay_response(struct exchange *x, const struct http_msg *r, struct out *o)
{
    struct conn *c = x->c;
    struct bufsock *s = &c->upstream->s;
    bool keep = x->m->minor == 1 && !x->m->conn_close && r->framing != BODY_UNTIL_CLOSE;
    const char *lf = memchr(s->buf, '\n', r->head_len);
    build_response(o, s->buf, (size_t)(lf + 1 - s->buf), r, keep);
    if (o->n >= sizeof(o->buf)) {
        x->why = "response head too large to forward";
        return false;
    }
    int io_ms = (int)c->set->idle_timeout_ms;
    bool upstream_keep = r->minor == 1 && !r->conn_close && r->framing != BODY_UNTIL_CLOSE;
    bufsock_consume(s, r->head_len);
    if (fd_write_all(c->fd, o->buf, o->n, now_ms() + io_ms) != IO_OK ||
        relay_body(s, c->fd, r, io_ms, &x->down_bytes, &x->why) != MOVE_DONE || s->len > 0)
        return false;
    if (!upstream_keep)
        upstream_close(c);
    return keep;
}

static bool exchange_run(struct exchange *x, struct out *o)
{
    struct http_msg r;
    for (int attempt = 0;; attempt++) {
        bool reused, stale;
        const struct proxy_error *err = upstream_get(x, &reused);
        if (err != NULL) {
            x->f.reason = err->code;
            conn_fail(x->c, &x->f, err, x->detail);
            return false;
        }
        int rc = send_request(x, o, reused);
        if (rc == SENT)
            err = read_response(x, &r, x->is_head, &stale);
        bool retry =
            reused && attempt == 0 &&
            (rc == UPSTREAM_STALE || (rc == SENT && err && stale && x->m->framing == BODY_NONE));
        if (retry) {
            upstream_close(x->c); /* the origin closed a kept connection: once more, fresh */
            continue;
        }
        if (rc == SENT && err == NULL)
            break;
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
    x->f.status = r.status;
    bool keep = relay_response(x, &r, o);
    if (!keep)
        upstream_close(x->c);
    x->f.reason = keep || x->why == NULL ? "allowed by rule" : x->why;
    return keep;
}

bool forward_serve(struct conn *c, const struct http_msg *m)
{
    struct exchange x = {.c = c, .m = m, .f = LOG_FIELDS_INIT};
    x.f.event = "forward";
    x.f.action = "deny";
    if (parse_url(m, &x.t, &x.why) != 0) {
        conn_fail(c, &x.f, &ERR_BAD_REQUEST, x.why);
        return false;
    }
    x.f.host = x.t.h.name;
    x.f.port = x.t.port;
    conn_decide(c, &x.t.h, x.t.port, &x.d, &x.f);
    x.f.rule = x.d.rule;
    x.f.reason = x.d.reason;
    if (x.d.action == ACTION_DENY) {
        conn_fail(c, &x.f, &ERR_POLICY_DENIED, x.d.reason);
        return false;
    }
    if (x.d.action == ACTION_INTERCEPT) /* what curl and requests send for http:// base URLs */
        return intercept_forward(c, m, &x.t.h, x.t.port);
    x.f.action = "allow";
    struct out *o = malloc(sizeof(*o));
    if (o == NULL) {
        conn_fail(c, &x.f, &ERR_UPSTREAM_ERROR, "out of memory");
        return false;
    }
    build_request(o, m, &x.t);
    if (o->n >= sizeof(o->buf)) {
        free(o);
        conn_fail(c, &x.f, &ERR_HEADERS_TOO_LARGE, "request head too large to forward");
        return false;
    }
    x.is_head = m->method_len == 4 && memcmp(m->method, "HEAD", 4) == 0;
    conn_consume(c, m->head_len);
    bool keep = exchange_run(&x, o);
    free(o);
    if (x.f.status >= 0) {
        x.f.action = "allow";
        x.f.src = c->src;
        x.f.bytes_up = (long long)x.up_bytes;
        x.f.bytes_down = (long long)x.down_bytes;
        metrics_bytes(x.up_bytes, x.down_bytes);
        x.f.duration_ms = now_ms() - c->t0;
        log_event(LOGL_INFO, &x.f);
    }
    return keep;
}
