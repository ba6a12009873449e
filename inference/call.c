/*
 * call.c - the call to a route's backend, and its answer relayed.
 *
 * The backend gets a head of egressd's making (the route's host, the
 * client's allowed headers, the route's key, the body's length) and the
 * body, on a kept connection when the pool has one (a kept one found
 * closed is retried once on a fresh one).  Streamed protocols go back to
 * the client piece by piece as the backend sends them; embeddings and model
 * lists are read whole and sent with a Content-Length.  Bodies move
 * through http/'s pump, decoded, so the client gets them framed by egressd.
 * Errors come in the request's API shape and never name the backend or
 * carry its key.
 */
#include "infer_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* request line, Host, the client's headers, the key, framing: always fits */
#define BACKEND_HEAD_MAX (FWD_HEADERS_MAX + API_KEY_MAX + PATH_MAX_LEN + 2048)

enum attempt { SENT, STALE, DOWN, MALFORMED };

/* The backend request head into out; its length, or -1 when it does not fit. */
static int backend_head(const struct exchange *x, char *out, size_t cap)
{
    const struct route *r = x->route;
    char path[PATH_MAX_LEN + 300];
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
    if (x->body.len > 0 || strcmp(x->method, "POST") == 0)
        sbuf_printf(&b, "Content-Length: %zu\r\n", x->body.len);
    sbuf_str(&b, "\r\n");
    return b.cut ? -1 : (int)b.len;
}

static enum attempt send_request(struct exchange *x, struct backend_conn *b, bool reused,
                                 const char *head, size_t len)
{
    int64_t deadline = now_ms() + x->route->timeout_ms; /* the whole request */
    enum io_result rc = stream_write_all(b->in.s, head, len, deadline);
    if (rc == IO_OK && x->body.len > 0)
        rc = stream_write_all(b->in.s, x->body.p, x->body.len, deadline);
    if (rc != IO_OK)
        return reused ? STALE : DOWN;
    x->rec.bytes_up = x->body.len;
    return SENT;
}

static enum attempt read_answer(struct exchange *x, struct backend_conn *b, bool reused,
                                struct http_msg *r, const char **why)
{
    switch (bufconn_read_response(&b->in, false, r, now_ms() + x->route->timeout_ms, why)) {
    case RESPONSE_OK:
        return r->status == 101 ? MALFORMED : SENT; /* nobody asked to switch */
    case RESPONSE_CLOSED:
        *why = "the model backend closed the connection";
        return reused ? STALE : DOWN;
    case RESPONSE_TIMEOUT:
        *why = "the model backend did not answer in time";
        return DOWN;
    case RESPONSE_TOO_LARGE:
    case RESPONSE_MALFORMED:
        break;
    }
    *why = "the model backend sent a malformed response";
    return MALFORMED;
}

/* One attempt on a pooled or fresh connection; *bp holds it when SENT. */
static enum attempt attempt(struct exchange *x, bool fresh, const char *head, size_t len,
                            struct backend_conn **bp, struct http_msg *r, const char **why,
                            char *err, size_t errlen)
{
    bool reused;
    struct backend_conn *b = backend_open(x->env, x->route, fresh, &reused, err, errlen);
    if (b == NULL)
        return DOWN;
    enum attempt a = send_request(x, b, reused, head, len);
    if (a == SENT)
        a = read_answer(x, b, reused, r, why);
    if (a == SENT)
        *bp = b;
    else
        backend_done(x->env, b, false);
    return a;
}

/* The response's end-to-end headers as lines, and whether the body is SSE. */
static void answer_headers(const struct http_msg *r, struct sbuf *out, bool *sse)
{
    *sse = false;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct http_header *h = &r->headers[i];
        if (http_hop_by_hop(r, h))
            continue;
        if (http_name_is(h, "content-type") && h->value_len >= 17 &&
            strncasecmp(h->value, "text/event-stream", 17) == 0)
            *sse = true;
        size_t before = out->len;
        sbuf_add(out, h->name, h->name_len);
        sbuf_str(out, ": ");
        sbuf_add(out, h->value, h->value_len);
        sbuf_str(out, "\r\n");
        if (out->cut) { /* what fits, whole lines only */
            out->len = before, out->cut = false;
            out->buf[before] = '\0';
            return;
        }
    }
}

/* The backend's own reason phrase, printable. */
static void reason_of(const struct bufconn *in, const struct http_msg *r, char *out, size_t cap)
{
    const char *lf = memchr(in->buf, '\n', r->head_len);
    int n = lf - in->buf > 14 ? (int)(lf - in->buf - 14) : 0;
    snprintf(out, cap, "%.*s", n, in->buf + 13);
    out[strcspn(out, "\r")] = '\0';
}

/* A piece of the answer on its way: token usage noted, then to the client. */
static int take_piece(void *ctx, const char *p, size_t n)
{
    struct exchange *x = ctx;
    usage_scan(&x->rec.usage, p, n);
    return reply_piece(&x->rp, p, n);
}

static const char *cut_reason(enum pump_result pr, const char *why)
{
    return pr == PUMP_TOO_LARGE ? "the response exceeds max_response_body"
           : pr == PUMP_TIMEOUT ? "the backend sent nothing for too long"
                                : why;
}

/* Stream the answer: head now, each piece as it comes.  True: keep-alive. */
static bool relay_streamed(struct exchange *x, struct backend_conn *b, const struct http_msg *r,
                           const char *reason, const char *headers, bool sse, bool *backend_ok)
{
    const char *why = NULL;
    uint64_t moved;
    if (reply_head(&x->rp, r->status, reason, headers, -1) != 0)
        return false;
    struct body_limits lim = {.max = x->lim->max_response_body,
                              .idle_ms = (int)x->lim->stream_idle_timeout_ms,
                              .decode = true};
    struct body_sink sink = {take_piece, x};
    enum pump_result pr =
        http_pump_body(&b->in, r->framing, r->content_length, &lim, &sink, &moved, &why);
    *backend_ok = pr == PUMP_DONE && r->framing != BODY_UNTIL_CLOSE && !r->conn_close;
    if (pr == PUMP_DONE)
        return reply_end(&x->rp) == 0 && x->rp.chunked;
    why = x->rp.failed ? "the client went away" : cut_reason(pr, why);
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
                           const char *reason, const char *headers, bool *backend_ok)
{
    struct body_buffer acc = {0};
    const char *why = NULL;
    uint64_t moved;
    struct body_limits lim = {.max = x->lim->max_response_body,
                              .idle_ms = (int)x->lim->stream_idle_timeout_ms,
                              .deadline = now_ms() + x->route->timeout_ms,
                              .decode = true};
    struct body_sink sink = {body_buffer_put, &acc};
    enum pump_result pr =
        http_pump_body(&b->in, r->framing, r->content_length, &lim, &sink, &moved, &why);
    *backend_ok = pr == PUMP_DONE && r->framing != BODY_UNTIL_CLOSE && !r->conn_close;
    bool keep;
    if (pr != PUMP_DONE) {
        snprintf(x->rec.detail, sizeof(x->rec.detail), "%s", cut_reason(pr, why));
        keep = exchange_fail(x, 502, "upstream_error",
                             pr == PUMP_TOO_LARGE ? "the model backend's response is too large"
                                                  : "the model backend's response was cut short",
                             false);
    } else {
        usage_scan(&x->rec.usage, acc.p ? acc.p : "", acc.len);
        keep = reply_whole(&x->rp, r->status, reason, headers, acc.p ? acc.p : "", acc.len) == 0 &&
               x->minor == 1 && !x->client_close;
        x->rec.status = r->status;
    }
    body_buffer_free(&acc);
    return keep;
}

/* Send, with one more try on a fresh connection when a kept one was stale;
 * false when the client got an error instead (*keep: may it go on). */
static bool send_with_retry(struct exchange *x, const char *head, size_t len,
                            struct backend_conn **b, struct http_msg *r, bool *keep)
{
    const char *why = NULL;
    char err[256] = "";
    enum attempt a = attempt(x, false, head, len, b, r, &why, err, sizeof(err));
    if (a == STALE) /* a kept connection the backend had closed: once more, fresh */
        a = attempt(x, true, head, len, b, r, &why, err, sizeof(err));
    if (a == SENT)
        return true;
    snprintf(x->rec.detail, sizeof(x->rec.detail), "%s", err[0] ? err : why ? why : "cannot send");
    bool malformed = a == MALFORMED;
    *keep = exchange_fail(x, malformed ? 502 : 503,
                          malformed ? "upstream_error" : "upstream_unavailable",
                          why ? why : "the model backend is unavailable", true);
    return false;
}

bool call_backend(struct exchange *x)
{
    struct http_msg r;
    struct backend_conn *b = NULL;
    char *head = malloc(BACKEND_HEAD_MAX);
    int hlen = head ? backend_head(x, head, BACKEND_HEAD_MAX) : -1;
    if (hlen < 0) {
        free(head);
        return exchange_fail(x, 431, "headers_too_large",
                             "the request head is too large to forward", false);
    }
    bool keep = false;
    bool sent = send_with_retry(x, head, (size_t)hlen, &b, &r, &keep);
    explicit_bzero(head, BACKEND_HEAD_MAX); /* it held the key */
    free(head);
    if (!sent)
        return keep;
    char *headers = malloc(HTTP_RESP_MAX);
    char reason[64];
    bool sse, backend_ok = false;
    if (headers == NULL) {
        backend_done(x->env, b, false);
        return exchange_fail(x, 502, "upstream_error", "out of memory", false);
    }
    struct sbuf hb;
    sbuf_init(&hb, headers, HTTP_RESP_MAX);
    answer_headers(&r, &hb, &sse);
    reason_of(&b->in, &r, reason, sizeof(reason));
    bufconn_consume(&b->in, r.head_len);
    x->rec.status = r.status;
    if (api_is_streamed(x->proto))
        keep = relay_streamed(x, b, &r, reason, headers, sse, &backend_ok);
    else
        keep = relay_buffered(x, b, &r, reason, headers, &backend_ok);
    free(headers);
    backend_done(x->env, b, backend_ok);
    return keep && x->minor == 1 && !x->client_close;
}
