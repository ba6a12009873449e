/*
 * serve.c - one intercepted request, from its head to its logged answer.
 *
 * The request is recognised (api.c) or refused with 403 not_inference; its
 * body is read whole (bounded by max_request_body) because routing may need
 * the model and a rewrite replaces it; a route is chosen; the backend gets
 * the allowed headers, the route's key, and the body (one value changed at
 * most).  Streamed protocols go back to the client piece by piece as the
 * backend sends them, chunked, never waiting to fill a buffer; embeddings
 * and model lists are read whole and sent with a Content-Length.  Errors
 * come in the shape of the request's API so that SDKs show them, and never
 * name the backend or carry its key.
 */
#include "infer_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REQUEST_MAX_CHUNKS 65536
#define FWD_HEADERS_MAX    HTTP_HEAD_MAX
/* request line, Host, the client's headers, the key, framing: always fits */
#define BACKEND_HEAD_MAX (FWD_HEADERS_MAX + API_KEY_MAX + 4096)
#define RESP_HEADERS_MAX (32 * 1024)

struct exchange {
    const struct inference_env *env;
    struct inference_client *cl;
    const struct inference_settings *lim;
    enum err_style style;
    enum protocol proto;
    const struct route *route;
    int minor;
    bool client_close, has_model, stream;
    struct json_span model; /* the top-level "model" member's value in body */
    char method[16];
    char path[2048];
    char fwd[FWD_HEADERS_MAX]; /* the client headers that may pass, as lines */
    size_t fwd_len;
    bool has_anthropic_version;
    char *body;
    size_t body_len, body_cap;
    struct reply rp;
    struct inference_record rec;
    int64_t t0;
};

/* An error in the request's API shape; true when the connection goes on. */
static bool fail(struct exchange *x, int status, const char *code, const char *message, bool keep)
{
    char body[1024], out[1400];
    keep = keep && x->minor == 1 && !x->client_close;
    int blen = api_error_body(body, sizeof(body), x->style, code, message);
    int n = blen < 0 ? -1
                     : snprintf(out, sizeof(out),
                                "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                                "Content-Length: %d\r\nX-Egressd-Error: %s\r\n%s\r\n%s",
                                status, http_reason_phrase(status), blen, code,
                                keep ? "" : "Connection: close\r\n", body);
    if (n < 0 || (size_t)n >= sizeof(out) ||
        stream_write_all(x->cl->s, out, (size_t)n, now_ms() + x->rp.io_ms) != 0)
        keep = false;
    x->rec.status = status;
    x->rec.error = code;
    return keep;
}

/* ---- replies to the client --------------------------------------------------- */

/* Status line, headers and framing into out (RESP_HEADERS_MAX + 256);
 * headers that do not fit are dropped rather than cut in the middle. */
static size_t format_head(struct reply *rp, char *out, int status, const char *reason,
                          const char *headers, long long content_length)
{
    struct sbuf b;
    sbuf_init(&b, out, RESP_HEADERS_MAX + 256);
    sbuf_printf(&b, "HTTP/1.1 %d %s\r\n", status, reason);
    size_t mark = b.len;
    sbuf_str(&b, headers);
    if (b.cut || b.len > RESP_HEADERS_MAX) {
        sbuf_init(&b, out, RESP_HEADERS_MAX + 256);
        sbuf_printf(&b, "HTTP/1.1 %d %s\r\n", status, reason);
    }
    (void)mark;
    if (content_length >= 0)
        rp->chunked = false;
    if (content_length >= 0)
        sbuf_printf(&b, "Content-Length: %lld\r\n\r\n", content_length);
    else
        sbuf_printf(&b, "%s\r\n",
                    rp->chunked ? "Transfer-Encoding: chunked\r\n" : "Connection: close\r\n");
    rp->head_sent = true;
    return b.len;
}

/* Head and a whole body in one write: one TLS record, one packet when small. */
int reply_whole(struct reply *rp, int status, const char *reason, const char *headers,
                const char *body, size_t len)
{
    char *out = malloc(RESP_HEADERS_MAX + 256 + len);
    if (out == NULL)
        return rp->failed = true, -1;
    size_t n = format_head(rp, out, status, reason, headers, (long long)len);
    memcpy(out + n, body, len);
    int rc = stream_write_all(rp->cl->s, out, n + len, now_ms() + rp->io_ms);
    free(out);
    rp->bytes += len;
    if (rc != 0)
        rp->failed = true;
    return rc;
}

int reply_head(struct reply *rp, int status, const char *reason, const char *headers,
               long long content_length)
{
    char *out = malloc(RESP_HEADERS_MAX + 256);
    if (out == NULL)
        return rp->failed = true, -1;
    size_t n = format_head(rp, out, status, reason, headers, content_length);
    int rc = stream_write_all(rp->cl->s, out, n, now_ms() + rp->io_ms);
    free(out);
    if (rc != 0)
        rp->failed = true;
    return rc;
}

int reply_piece(struct reply *rp, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    rp->bytes += n;
    if (!rp->chunked)
        return stream_write_all(rp->cl->s, p, n, now_ms() + rp->io_ms) ? (rp->failed = true, -1)
                                                                       : 0;
    char *out = malloc(n + 32); /* one write: one TLS record, one packet when it fits */
    if (out == NULL)
        return rp->failed = true, -1;
    int h = snprintf(out, 32, "%zx\r\n", n);
    memcpy(out + h, p, n);
    memcpy(out + h + n, "\r\n", 2);
    int rc = stream_write_all(rp->cl->s, out, (size_t)h + n + 2, now_ms() + rp->io_ms);
    free(out);
    if (rc != 0)
        rp->failed = true;
    return rc;
}

int reply_end(struct reply *rp)
{
    if (!rp->chunked)
        return 0;
    if (stream_write_all(rp->cl->s, "0\r\n\r\n", 5, now_ms() + rp->io_ms) != 0)
        return rp->failed = true, -1;
    return 0;
}

/* ---- the request --------------------------------------------------------------- */

/* Origin-form path of the target (absolute-form http:// too); -1 if neither. */
static int target_path(const struct http_msg *m, char *out, size_t cap)
{
    const char *t = m->target, *end = m->target + m->target_len;
    if (m->target_len >= 7 && strncasecmp(t, "http://", 7) == 0) {
        t = memchr(t + 7, '/', (size_t)(end - t - 7));
        if (t == NULL)
            t = end;
    } else if (t == end || *t != '/') {
        return -1;
    }
    int n = snprintf(out, cap, "%.*s", (int)(end - t), t);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    if (n == 0)
        snprintf(out, cap, "/");
    return 0;
}

static void copy_forwardable(struct exchange *x, const struct http_msg *m)
{
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http_header *h = &m->headers[i];
        if (!header_forwardable(h))
            continue;
        x->has_anthropic_version |= http_name_is(h, "anthropic-version");
        int n = snprintf(x->fwd + x->fwd_len, sizeof(x->fwd) - x->fwd_len, "%.*s: %.*s\r\n",
                         (int)h->name_len, h->name, (int)h->value_len, h->value);
        if (n > 0 && (size_t)n < sizeof(x->fwd) - x->fwd_len)
            x->fwd_len += (size_t)n;
    }
}

static int body_append(void *ctx, const char *p, size_t n)
{
    struct exchange *x = ctx;
    if (x->body_len + n > x->lim->max_request_body)
        return -1;
    if (x->body_len + n > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap * 2 : 16384;
        while (cap < x->body_len + n)
            cap *= 2;
        char *grown = realloc(x->body, cap + 1);
        if (grown == NULL)
            return -1;
        x->body = grown;
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, p, n);
    x->body_len += n;
    return 0;
}

/* Read the body after the head (already consumed from cl->buf), all of it
 * by the deadline.  0, -1 malformed or cut (400), -2 too large (413), -3
 * not all there by the deadline (408). */
static int read_body(struct exchange *x, enum http_framing framing, uint64_t length,
                     int64_t deadline)
{
    struct inference_client *cl = x->cl;
    struct chunked ch;
    const char *why;
    bool done = framing == BODY_NONE || (framing == BODY_LENGTH && length == 0);
    if (framing == BODY_LENGTH && length > x->lim->max_request_body)
        return -2;
    chunked_init(&ch, REQUEST_MAX_CHUNKS);
    while (!done) {
        enum io_result r =
            cl->len > 0 ? IO_OK : stream_read(cl->s, cl->buf, cl->cap, &cl->len, deadline);
        if (r != IO_OK)
            return r == IO_TIMEOUT ? -3 : -1;
        size_t used;
        if (framing == BODY_LENGTH) {
            used = cl->len < length - x->body_len ? cl->len : (size_t)(length - x->body_len);
            if (body_append(x, cl->buf, used) != 0)
                return -2;
            done = x->body_len == length;
        } else {
            ssize_t n = chunked_decode(&ch, cl->buf, cl->len, &done, &why, body_append, x);
            if (n < 0)
                return x->body_len >= x->lim->max_request_body ? -2 : -1;
            used = (size_t)n;
        }
        memmove(cl->buf, cl->buf + used, cl->len - used);
        cl->len -= used;
    }
    return 0;
}

/* The request's model (for routing and logs) and stream flag: 0, or -1
 * with *why when the body must be refused (not one JSON object, or one that
 * a backend could read another model from). */
static int inspect_body(struct exchange *x, const char **why)
{
    static const char *const keys[] = {"model", "stream"};
    struct json_span spans[2];
    if (x->proto == PROTO_MODEL_DISCOVERY) {
        const char *id = x->path + strlen("/v1/models");
        if (*id == '/')
            snprintf(x->rec.model, sizeof(x->rec.model), "%.*s", (int)strcspn(id + 1, "?"), id + 1);
        x->has_model = x->rec.model[0] != '\0';
        return 0;
    }
    if (x->body_len == 0)
        return 0;
    if (json_object_scan(x->body, x->body_len, keys, 2, spans, why) != JSON_OK)
        return -1;
    x->model = spans[0];
    if (spans[0].found && spans[0].end > spans[0].start && x->body[spans[0].start] == '"') {
        if (json_string(x->body + spans[0].start, spans[0].end - spans[0].start, x->rec.model,
                        sizeof(x->rec.model), why) < 0)
            return -1; /* a NUL, or longer than any model name: a backend would read it otherwise */
        x->has_model = true;
    }
    x->stream = spans[1].found && spans[1].end - spans[1].start == 4 &&
                memcmp(x->body + spans[1].start, "true", 4) == 0;
    return 0;
}

/* Replace the value of the top-level "model" with the route's. */
static int rewrite_model(struct exchange *x)
{
    size_t vs = x->model.start, ve = x->model.end;
    char esc[600];
    if (x->route->model[0] == '\0' || !x->model.found)
        return 0;
    size_t elen = json_escape(esc, sizeof(esc), x->route->model);
    size_t len = vs + elen + 2 + (x->body_len - ve);
    char *nb = malloc(len + 1);
    if (nb == NULL)
        return -1;
    memcpy(nb, x->body, vs);
    nb[vs] = '"';
    memcpy(nb + vs + 1, esc, elen);
    nb[vs + 1 + elen] = '"';
    memcpy(nb + vs + 2 + elen, x->body + ve, x->body_len - ve);
    free(x->body);
    x->body = nb;
    x->body_len = x->body_cap = len;
    x->model.end = vs + elen + 2;
    return 0;
}

/* ---- the backend --------------------------------------------------------------- */

/* The backend request head into out; its length, or -1 when it does not
 * fit (a long client head and a long key together). */
static int backend_head(const struct exchange *x, char *out, size_t cap)
{
    const struct route *r = x->route;
    char path[2400];
    struct sbuf b;
    if (path_join(path, sizeof(path), r->base_path, x->path, strlen(x->path)) != 0)
        return -1;
    bool v6 = strchr(r->host, ':') != NULL;
    sbuf_init(&b, out, cap);
    sbuf_printf(&b, "%s %s HTTP/1.1\r\nHost: %s%s%s", x->method, path, v6 ? "[" : "", r->host,
                v6 ? "]" : "");
    if (r->port != (r->scheme == ENDPOINT_HTTPS ? 443 : 80))
        sbuf_printf(&b, ":%u", r->port);
    sbuf_str(&b, "\r\n");
    sbuf_add(&b, x->fwd, x->fwd_len);
    if (r->provider == PROVIDER_ANTHROPIC && !x->has_anthropic_version)
        sbuf_str(&b, "anthropic-version: 2023-06-01\r\n");
    if (r->api_key != NULL) {
        sbuf_str(&b, r->provider == PROVIDER_ANTHROPIC ? "x-api-key: " : "Authorization: Bearer ");
        sbuf_str(&b, r->api_key);
        sbuf_str(&b, "\r\n");
    }
    if (x->body_len > 0 || strcmp(x->method, "POST") == 0)
        sbuf_printf(&b, "Content-Length: %zu\r\n", x->body_len);
    sbuf_str(&b, "\r\n");
    return b.cut ? -1 : (int)b.len;
}

enum { SENT, STALE, DOWN };

static int send_to_backend(struct exchange *x, struct backend_conn *b, bool reused,
                           const char *head, size_t len)
{
    int64_t deadline = now_ms() + x->route->timeout_ms; /* the whole request */
    enum io_result rc = stream_write_all(b->s, head, len, deadline);
    if (rc == IO_OK && x->body_len > 0)
        rc = stream_write_all(b->s, x->body, x->body_len, deadline);
    if (rc != 0)
        return reused ? STALE : DOWN;
    x->rec.bytes_up = x->body_len;
    return SENT;
}

/* The final response head from b; SENT, STALE (a kept connection that was
 * closed: retry), or DOWN with *why. */
static int read_response(struct exchange *x, struct backend_conn *b, bool reused,
                         struct http_msg *r, const char **why)
{
    for (;;) {
        int64_t deadline = now_ms() + x->route->timeout_ms;
        enum head_status st = http_read_head(b->s, b->buf, RESP_HEADERS_MAX, &b->len, deadline);
        if (st == HEAD_EOF || st == HEAD_ERROR) {
            *why = "the model backend closed the connection";
            return reused ? STALE : DOWN;
        }
        if (st != HEAD_OK) {
            *why = st == HEAD_TIMEOUT ? "the model backend did not answer in time"
                                      : "the model backend sent a malformed response";
            return DOWN;
        }
        if (http_parse_response(b->buf, b->len, false, r, why) != HTTP_OK || r->status == 101) {
            *why = "the model backend sent a malformed response";
            return -1;
        }
        if (r->status >= 200)
            return SENT;
        memmove(b->buf, b->buf + r->head_len, b->len - r->head_len); /* 1xx */
        b->len -= r->head_len;
    }
}

static bool response_header_passes(const struct http_header *h)
{
    static const char *const drop[] = {"connection",         "keep-alive", "proxy-connection",
                                       "proxy-authenticate", "te",         "trailer",
                                       "transfer-encoding",  "upgrade",    "content-length"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (http_name_is(h, drop[i]))
            return false;
    return true;
}

/* End-to-end response headers as lines, and whether the body is SSE. */
static void response_headers(const struct http_msg *r, char *out, size_t cap, bool *sse)
{
    size_t n = 0;
    *sse = false;
    out[0] = '\0';
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct http_header *h = &r->headers[i];
        if (!response_header_passes(h))
            continue;
        if (http_name_is(h, "content-type") && h->value_len >= 17 &&
            strncasecmp(h->value, "text/event-stream", 17) == 0)
            *sse = true;
        int w = snprintf(out + n, cap - n, "%.*s: %.*s\r\n", (int)h->name_len, h->name,
                         (int)h->value_len, h->value);
        if (w < 0 || (size_t)w >= cap - n)
            break;
        n += (size_t)w;
    }
}

struct pump {
    struct exchange *x;
    char *acc; /* buffered protocols: the whole body */
    size_t acc_len;
    bool too_big;
};

static int take_piece(void *ctx, const char *p, size_t n)
{
    struct pump *pu = ctx;
    struct exchange *x = pu->x;
    usage_scan(&x->rec.usage, p, n);
    if (x->rp.bytes + pu->acc_len + n > x->lim->max_response_body) {
        pu->too_big = true;
        return -1;
    }
    if (pu->acc == NULL)
        return reply_piece(&x->rp, p, n);
    memcpy(pu->acc + pu->acc_len, p, n); /* acc holds max_response_body: it fits */
    pu->acc_len += n;
    return 0;
}

/* The response body from b through take_piece; 0 when whole, else *why. */
static int backend_body(struct exchange *x, struct backend_conn *b, const struct http_msg *r,
                        struct pump *pu, int64_t deadline, const char **why)
{
    uint64_t remaining = r->content_length;
    struct chunked ch;
    bool done = r->framing == BODY_NONE || (r->framing == BODY_LENGTH && remaining == 0);
    int idle_ms = (int)x->lim->stream_idle_timeout_ms;
    chunked_init(&ch, 0);
    while (!done) {
        if (b->len == 0) {
            int64_t idle = now_ms() + idle_ms; /* between pieces; a whole buffered answer too */
            enum io_result n = stream_read(b->s, b->buf, BACKEND_BUF, &b->len,
                                           deadline > 0 && deadline < idle ? deadline : idle);
            if (n == IO_EOF && r->framing == BODY_UNTIL_CLOSE)
                return 0;
            if (n != IO_OK) {
                *why = n == IO_EOF       ? "the backend closed the stream early"
                       : n == IO_TIMEOUT ? "the backend sent nothing for too long"
                                         : "reading from the backend failed";
                return -1;
            }
        }
        size_t used = b->len;
        int rc = 0;
        if (r->framing == BODY_CHUNKED) {
            ssize_t n = chunked_decode(&ch, b->buf, b->len, &done, why, take_piece, pu);
            rc = n < 0 ? -1 : 0;
            used = n < 0 ? 0 : (size_t)n;
        } else {
            if (r->framing == BODY_LENGTH && used > remaining)
                used = (size_t)remaining;
            rc = take_piece(pu, b->buf, used);
            remaining -= r->framing == BODY_LENGTH ? used : 0;
            done = r->framing == BODY_LENGTH && remaining == 0;
        }
        if (rc != 0) {
            *why = pu->too_big    ? "the response exceeds max_response_body"
                   : x->rp.failed ? "the client went away"
                                  : "the backend's chunked framing is malformed";
            return -1;
        }
        memmove(b->buf, b->buf + used, b->len - used);
        b->len -= used;
    }
    return 0;
}

/* Stream the answer: head now, each piece as it comes.  True: keep-alive. */
static bool relay_streamed(struct exchange *x, struct backend_conn *b, const struct http_msg *r,
                           const char *headers, bool sse, bool *backend_ok)
{
    struct pump pu = {.x = x};
    const char *why = NULL;
    const char *lf = memchr(b->buf, '\n', r->head_len);
    char reason[64];
    snprintf(reason, sizeof(reason), "%.*s", lf - b->buf > 14 ? (int)(lf - b->buf - 14) : 0,
             b->buf + 13);
    reason[strcspn(reason, "\r")] = '\0';
    memmove(b->buf, b->buf + r->head_len, b->len - r->head_len);
    b->len -= r->head_len;
    if (reply_head(&x->rp, r->status, reason, headers, -1) != 0)
        return false;
    int rc = backend_body(x, b, r, &pu, 0, &why);
    *backend_ok = rc == 0 && r->framing != BODY_UNTIL_CLOSE && !r->conn_close;
    if (rc == 0)
        return reply_end(&x->rp) == 0 && x->rp.chunked;
    x->rec.error = "stream_cut";
    snprintf(x->rec.detail, sizeof(x->rec.detail), "%s", why);
    char ev[1024];
    int n = sse ? sse_error_event(ev, sizeof(ev), why) : -1;
    if (!x->rp.failed && n > 0 && reply_piece(&x->rp, ev, (size_t)n) == 0)
        reply_end(&x->rp);
    /* not SSE: no final chunk, so the client sees a cut message, not a short one */
    return false;
}

/* Read the whole answer, then send it with a Content-Length. */
static bool relay_buffered(struct exchange *x, struct backend_conn *b, const struct http_msg *r,
                           const char *headers, bool *backend_ok)
{
    size_t cap = r->framing == BODY_LENGTH && r->content_length < x->lim->max_response_body
                     ? (size_t)r->content_length
                     : (size_t)x->lim->max_response_body;
    struct pump pu = {.x = x, .acc = malloc(cap + 1)};
    const char *why = NULL;
    char reason[64];
    const char *lf = memchr(b->buf, '\n', r->head_len);
    snprintf(reason, sizeof(reason), "%.*s", lf - b->buf > 14 ? (int)(lf - b->buf - 14) : 0,
             b->buf + 13);
    reason[strcspn(reason, "\r")] = '\0';
    memmove(b->buf, b->buf + r->head_len, b->len - r->head_len);
    b->len -= r->head_len;
    if (pu.acc == NULL)
        return fail(x, 502, "upstream_error", "out of memory", false);
    if (r->framing == BODY_LENGTH && r->content_length > x->lim->max_response_body)
        why = "the response exceeds max_response_body", pu.too_big = true;
    int rc = why ? -1 : backend_body(x, b, r, &pu, now_ms() + x->route->timeout_ms, &why);
    *backend_ok = rc == 0 && r->framing != BODY_UNTIL_CLOSE && !r->conn_close;
    bool keep;
    if (rc != 0) {
        snprintf(x->rec.detail, sizeof(x->rec.detail), "%s", why);
        keep = fail(x, 502, "upstream_error",
                    pu.too_big ? "the model backend's response is too large"
                               : "the model backend's response was cut short",
                    false);
    } else {
        keep = reply_whole(&x->rp, r->status, reason, headers, pu.acc, pu.acc_len) == 0 &&
               x->minor == 1 && !x->client_close;
        x->rec.status = r->status;
    }
    free(pu.acc);
    return keep;
}

static bool call_backend(struct exchange *x)
{
    struct http_msg r;
    struct backend_conn *b = NULL;
    const char *why = NULL;
    char err[256] = "";
    int rc = DOWN;
    char *head = malloc(BACKEND_HEAD_MAX);
    int hlen = head ? backend_head(x, head, BACKEND_HEAD_MAX) : -1;
    if (hlen < 0) {
        free(head);
        return fail(x, 431, "bad_request", "the request head is too large to forward", false);
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        bool reused;
        b = backend_open(x->env, x->route, attempt > 0, &reused, err, sizeof(err));
        if (b == NULL) {
            explicit_bzero(head, BACKEND_HEAD_MAX);
            free(head);
            snprintf(x->rec.detail, sizeof(x->rec.detail), "%s", err);
            return fail(x, 503, "upstream_unavailable", "the model backend is unavailable", true);
        }
        rc = send_to_backend(x, b, reused, head, (size_t)hlen);
        if (rc == SENT)
            rc = read_response(x, b, reused, &r, &why);
        if (rc == SENT)
            break;
        backend_done(x->env, b, false);
        if (rc != STALE)
            break; /* a kept connection that the backend closed: once more, fresh */
    }
    explicit_bzero(head, BACKEND_HEAD_MAX); /* it held the key */
    free(head);
    if (rc != SENT) {
        snprintf(x->rec.detail, sizeof(x->rec.detail), "%s", why ? why : "cannot send");
        bool malformed = rc < 0;
        return fail(x, malformed ? 502 : 503, malformed ? "upstream_error" : "upstream_unavailable",
                    why ? why : "the model backend is unavailable", true);
    }
    char *headers = malloc(RESP_HEADERS_MAX);
    bool sse, backend_ok = false, keep = false;
    if (headers == NULL) {
        backend_done(x->env, b, false);
        return fail(x, 502, "upstream_error", "out of memory", false);
    }
    response_headers(&r, headers, RESP_HEADERS_MAX, &sse);
    x->rec.status = r.status;
    if (api_is_streamed(x->proto))
        keep = relay_streamed(x, b, &r, headers, sse, &backend_ok);
    else
        keep = relay_buffered(x, b, &r, headers, &backend_ok);
    free(headers);
    backend_done(x->env, b, backend_ok);
    return keep && x->minor == 1 && !x->client_close;
}

static bool route_and_answer(struct exchange *x)
{
    x->route = route_select(x->env->pol, x->proto, x->has_model ? x->rec.model : NULL);
    if (x->route == NULL) {
        char msg[300];
        bool none = policy_route_count(x->env->pol) == 0;
        snprintf(msg, sizeof(msg),
                 none ? "egressd has no inference route configured"
                      : "no route serves %s for model '%s'",
                 protocol_name(x->proto), x->rec.model);
        return fail(x, none ? 503 : 400, "no_route", msg, true);
    }
    x->rec.route = x->route->name;
    if (rewrite_model(x) != 0)
        return fail(x, 502, "upstream_error", "out of memory", false);
    if (x->route->scheme != ENDPOINT_MOCK)
        return call_backend(x);
    x->rec.status = 200;
    x->rec.bytes_up = x->body_len;
    const char *model = x->route->model[0] ? x->route->model : x->rec.model;
    bool ok = mock_respond(&x->rp, x->proto, model, x->stream) == 0;
    return ok && x->minor == 1 && !x->client_close;
}

static bool serve_parsed(struct exchange *x, const struct http_msg *m)
{
    /* the body follows its head at once: it too must come within header_timeout */
    int64_t body_deadline = now_ms() + policy_settings(x->env->pol)->header_timeout_ms;
    const char *why;
    if (target_path(m, x->path, sizeof(x->path)) != 0 || m->method_len >= sizeof(x->method))
        return fail(x, 400, "bad_request", "malformed request target", false);
    if (http_path_check(x->path, strlen(x->path), &why) != 0)
        return fail(x, 400, "bad_request", why, false);
    memcpy(x->method, m->method, m->method_len);
    x->method[m->method_len] = '\0';
    if (strncmp(x->path, "/v1/messages", 12) == 0 || http_header_find(m, "anthropic-version"))
        x->style = STYLE_ANTHROPIC;
    if (api_match(x->method, m->method_len, x->path, strlen(x->path), &x->proto) != 0)
        return fail(x, 403, "not_inference",
                    "egressd intercepts this host for inference API calls only", false);
    x->rec.protocol = protocol_name(x->proto);
    copy_forwardable(x, m);
    enum http_framing framing = m->framing;
    uint64_t length = m->content_length;
    memmove(x->cl->buf, x->cl->buf + m->head_len, x->cl->len - m->head_len); /* m dies here */
    x->cl->len -= m->head_len;
    int rc = read_body(x, framing, length, body_deadline);
    if (rc == -2)
        return fail(x, 413, "body_too_large", "the request body exceeds max_request_body", false);
    if (rc == -3)
        return fail(x, 408, "request_timeout", "the request body did not arrive in time", false);
    if (rc != 0)
        return fail(x, 400, "bad_request", "the request body is malformed or incomplete", false);
    if (inspect_body(x, &why) != 0)
        return fail(x, 400, "bad_request", why, true);
    return route_and_answer(x);
}

bool inference_serve_request(const struct inference_env *env, struct inference_client *cl,
                             const struct http_msg *m)
{
    struct exchange *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return false;
    x->env = env;
    x->cl = cl;
    x->lim = policy_inference(env->pol);
    x->t0 = now_ms();
    x->minor = m->minor;
    x->client_close = m->conn_close;
    x->rp = (struct reply){
        .cl = cl, .io_ms = (int)x->lim->stream_idle_timeout_ms, .chunked = m->minor == 1};
    x->rec.usage = (struct usage){-1, -1};
    bool keep = serve_parsed(x, m);
    x->rec.bytes_down = x->rp.bytes;
    x->rec.duration_ms = now_ms() - x->t0;
    if (env->log != NULL)
        env->log(env->log_ctx, &x->rec);
    free(x->body);
    free(x);
    return keep;
}

void inference_serve(const struct inference_env *first_env, struct inference_client *cl,
                     int first_wait_ms)
{
    struct inference_env now = *first_env, *env = &now;
    int wait_ms = first_wait_ms;
    for (bool first = true;; first = false) {
        struct http_msg m;
        const char *why;
        enum head_status st = http_read_head(cl->s, cl->buf, cl->cap, &cl->len, now_ms() + wait_ms);
        if (st != HEAD_OK) {
            if (st == HEAD_TOO_LARGE || (st == HEAD_TIMEOUT && cl->len > 0)) {
                struct exchange x = {.cl = cl, .minor = 1, .rp.io_ms = 2000};
                bool big = st == HEAD_TOO_LARGE;
                fail(&x, big ? 431 : 408, big ? "headers_too_large" : "request_timeout",
                     big ? "request head larger than 8 KiB" : "request head not received in time",
                     false);
            }
            return; /* gone, or idle between requests: a quiet close */
        }
        if (http_parse_request(cl->buf, cl->len, &m, &why) != HTTP_OK) {
            struct exchange x = {.cl = cl, .minor = 1, .rp.io_ms = 2000};
            fail(&x, 400, "bad_request", why, false);
            return;
        }
        if (!first && env->refresh != NULL && !env->refresh(env->refresh_ctx, env)) {
            struct exchange x = {.cl = cl, .minor = 1, .rp.io_ms = 2000};
            fail(&x, 403, "policy_denied",
                 "egressd no longer intercepts this destination (its configuration was reloaded)",
                 false);
            return;
        }
        if (!inference_serve_request(env, cl, &m))
            return;
        wait_ms = (int)policy_inference(env->pol)->keepalive_timeout_ms;
    }
}
