/*
 * reply.c - what goes back to the client of an intercepted request: a
 * head, then pieces (chunked toward an HTTP/1.1 client, so that each piece
 * leaves as it comes), then the end; or a whole answer in one write; or an
 * error in the shape of the request's API, which SDKs show, recorded for
 * the log (a budget's 429 among them, with its Retry-After).  Every write
 * has a deadline of io_ms; a failed write marks the reply failed and
 * everything after it is skipped.
 */
#include "infer_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLY_HEAD_MAX (HTTP_RESP_MAX + 256)

static int written(struct reply *rp, enum io_result r)
{
    if (r != IO_OK)
        rp->failed = true;
    return r == IO_OK ? 0 : -1;
}

/* What was built, on its way; a cut one is never sent. */
static int send_built(struct reply *rp, const struct sbuf *b)
{
    if (b->cut)
        return rp->failed = true, -1;
    return written(rp, stream_write_all(rp->s, b->buf, b->len, now_ms() + rp->io_ms));
}

/* Status line, headers and framing; headers that do not fit are dropped
 * rather than cut in the middle. */
static void put_head(struct reply *rp, struct sbuf *b, int status, const char *reason,
                     const char *headers, long long content_length)
{
    sbuf_printf(b, "HTTP/1.1 %d %s\r\n", status, reason);
    size_t status_line = b->len;
    sbuf_str(b, headers);
    if (b->cut || b->len > HTTP_RESP_MAX) {
        b->len = status_line, b->cut = false;
        b->buf[b->len] = '\0';
    }
    if (content_length >= 0) {
        rp->chunked = false;
        sbuf_printf(b, "Content-Length: %lld\r\n\r\n", content_length);
    } else {
        sbuf_str(b,
                 rp->chunked ? "Transfer-Encoding: chunked\r\n\r\n" : "Connection: close\r\n\r\n");
    }
    rp->head_sent = true;
}

int reply_whole(struct reply *rp, int status, const char *reason, const char *headers,
                const char *body, size_t len)
{
    char *out = malloc(REPLY_HEAD_MAX + len);
    if (out == NULL)
        return rp->failed = true, -1;
    struct sbuf b;
    sbuf_init(&b, out, REPLY_HEAD_MAX + len);
    put_head(rp, &b, status, reason, headers, (long long)len);
    sbuf_add(&b, body, len);
    int rc = send_built(rp, &b);
    free(out);
    rp->bytes += len;
    return rc;
}

int reply_head(struct reply *rp, int status, const char *reason, const char *headers,
               long long content_length)
{
    char *out = malloc(REPLY_HEAD_MAX);
    if (out == NULL)
        return rp->failed = true, -1;
    struct sbuf b;
    sbuf_init(&b, out, REPLY_HEAD_MAX);
    put_head(rp, &b, status, reason, headers, content_length);
    int rc = send_built(rp, &b);
    free(out);
    return rc;
}

int reply_piece(struct reply *rp, const char *p, size_t n)
{
    if (n == 0 || rp->failed)
        return rp->failed ? -1 : 0;
    rp->bytes += n;
    if (!rp->chunked)
        return written(rp, stream_write_all(rp->s, p, n, now_ms() + rp->io_ms));
    char *out = malloc(n + 32); /* one write: one TLS record, one packet when it fits */
    if (out == NULL)
        return rp->failed = true, -1;
    struct sbuf b;
    sbuf_init(&b, out, n + 32);
    sbuf_printf(&b, "%zx\r\n", n);
    sbuf_add(&b, p, n);
    sbuf_str(&b, "\r\n");
    int rc = send_built(rp, &b);
    free(out);
    return rc;
}

int reply_end(struct reply *rp)
{
    if (!rp->chunked || rp->failed)
        return rp->failed ? -1 : 0;
    return written(rp, stream_write_all(rp->s, "0\r\n\r\n", 5, now_ms() + rp->io_ms));
}

/* The status line's phrase (http/phrase.c) for an error in an API's shape. */
static void fail_phrase(const struct exchange *x, const struct error_answer *a, const char *message,
                        char *out, size_t cap)
{
    struct http_error e = {a->status, a->code};
    struct http_error_info info = {.e = &e, .detail = message};
    if (x->method[0] != '\0' && x->path[0] != '\0')
        info.method = x->method, info.path = x->path;
    if (x->denied_rule != NULL)
        info.rule = x->denied_rule, info.message = message, info.by_deny_rule = true;
    http_error_phrase(out, cap, &info);
}

bool exchange_answer_error(struct exchange *x, const struct error_answer *e, const char *message,
                           bool keep)
{
    char body[1024], out[1536], phrase[HTTP_PHRASE_MAX + 1];
    struct sbuf o;
    keep = keep && x->minor == 1 && !x->client_close;
    int blen =
        api_error_body(body, sizeof(body), x->style, e->api_code ? e->api_code : e->code, message);
    fail_phrase(x, e, message, phrase, sizeof(phrase));
    sbuf_init(&o, out, sizeof(out));
    if (blen >= 0)
        http_put_answer(&o, e->status, phrase, e->code, "application/json", e->headers, body,
                        (size_t)blen, keep);
    if (blen < 0 || o.cut ||
        written(&x->rp, stream_write_all(x->rp.s, o.buf, o.len, now_ms() + x->rp.io_ms)) != 0)
        keep = false;
    x->rec.status = e->status;
    x->rec.error = e->code;
    return keep;
}

bool exchange_fail(struct exchange *x, int status, const char *code, const char *message, bool keep)
{
    struct error_answer e = {.status = status, .code = code};
    return exchange_answer_error(x, &e, message, keep);
}

bool exchange_limited(struct exchange *x, const struct budget_refusal *why)
{
    char headers[64], msg[256];
    snprintf(headers, sizeof(headers), "Retry-After: %u\r\n", why->retry_after_s);
    snprintf(msg, sizeof(msg), "egressd: the %s budget '%s' is spent; retry in %u s", why->kind,
             why->budget, why->retry_after_s);
    snprintf(x->rec.detail, sizeof(x->rec.detail), "budget '%s': %s spent", why->budget, why->kind);
    struct error_answer e = {.status = 429,
                             .code = "budget_exceeded",
                             .api_code = api_limit_code(x->style),
                             .headers = headers};
    return exchange_answer_error(x, &e, msg, true);
}
