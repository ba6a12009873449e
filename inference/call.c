/*
 * call.c - the call to a route's backend, tried again and handed to the
 * route's fallbacks while that can still help, and its answer relayed.
 *
 * Each backend gets a head of egressd's making (the route's host, the
 * client's allowed headers, the route's key, the body's length) and the
 * body, with the route's own model rewrite, on a kept connection when the
 * pool has one (a kept one found closed is retried once on a fresh one,
 * within the same attempt).  The client's body stays as it came for the
 * whole call, so every attempt can send it again.
 *
 * A mock:// route, first or a fallback, is one more attempt that always
 * answers (mock.c).
 *
 * An attempt that fails in a class the route's retry_on names (no
 * connection, a 5xx, a 429) is made again on the same route after a short
 * backoff (100 ms, doubling, at most 1 s), `retries` times, then on the
 * route's fallback with that route's own retries; fallbacks that do not
 * serve the protocol, or whose budget is spent, are passed over.  All of
 * it only while nothing of the answer has gone to the client, within the
 * first route's timeout, and for at most ATTEMPTS_MAX attempts.  The last
 * attempt's answer, whatever its status, is what the client gets.
 *
 * Streamed protocols go back to the client piece by piece as the backend
 * sends them (from then on a failure cuts the stream, never retries);
 * embeddings and model lists are read whole within the attempt, so a
 * backend that breaks off in the middle of one can still be retried, and
 * are sent with a Content-Length.  Bodies move through http/'s pump,
 * decoded, so the client gets them framed by egressd.  Errors come in the
 * request's API shape and never name the backend or carry its key.
 */
#include "infer_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* request line, Host, the client's headers, the key, framing: always fits */
#define BACKEND_HEAD_MAX (FWD_HEADERS_MAX + API_KEY_MAX + PATH_MAX_LEN + 2048)
#define ATTEMPTS_MAX     16
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS   1000

enum attempt {
    SENT,      /* an answer: its head read (and for buffered protocols its body) */
    STALE,     /* a kept connection the backend had closed */
    DOWN,      /* no answer: dial, TLS, send, or closed before a response head */
    TIMED_OUT, /* no response head in time */
    MALFORMED, /* an answer nobody should relay */
    CUT,       /* a buffered answer that broke off */
};

/* What one call holds across its attempts. */
struct call {
    char *head; /* the backend request head of head_route (it holds the key) */
    size_t head_len;
    const struct route *head_route;
    char *headers; /* the answer's end-to-end headers, as lines */
    char reason[64];
    struct http_msg r; /* the answer's head: scalars only once consumed */
    bool sse;
    struct backend_conn *b; /* holding the answer, when SENT */
    struct body_buffer acc; /* a buffered answer's body */
    enum pump_result pr;    /* how reading it went */
    const char *why;        /* what went wrong, for the client */
    char err[256];          /* the same with details, for the log only */
    int64_t deadline;       /* every attempt ends by then */
    unsigned retries_left;  /* on the current route */
    unsigned backoff_ms;
};

/* ---- the request as one route's backend gets it ---------------------------- */

/* The body with r's model instead of the client's, when r rewrites it. */
static int body_for_route(struct exchange *x)
{
    char esc[2 * ROUTE_MODEL_MAX];
    const char *to = route_model_for(x->route, x->has_model ? x->rec.model : NULL);
    body_buffer_free(&x->rewritten);
    if (to == NULL || !x->model.found)
        return 0;
    size_t vs = x->model.start, ve = x->model.end;
    size_t elen = json_escape(esc, sizeof(esc), to);
    struct body_buffer *nb = &x->rewritten;
    if (body_buffer_put(nb, x->body.p, vs) != 0 || body_buffer_put(nb, "\"", 1) != 0 ||
        body_buffer_put(nb, esc, elen) != 0 || body_buffer_put(nb, "\"", 1) != 0 ||
        body_buffer_put(nb, x->body.p + ve, x->body.len - ve) != 0) {
        body_buffer_free(nb);
        return -1;
    }
    return 0;
}

static const struct body_buffer *body_sent(const struct exchange *x)
{
    return x->rewritten.p != NULL ? &x->rewritten : &x->body;
}

/* The backend request head into out; its length, or -1 when it does not fit. */
static int backend_head(const struct exchange *x, char *out, size_t cap)
{
    const struct route *r = x->route;
    char path[PATH_MAX_LEN + 300];
    struct sbuf b;
    if (path_join(path, sizeof(path), r->base_path, x->path, strlen(x->path)) != 0)
        return -1;
    bool v6 = strchr(r->host, ':') != NULL;
    size_t blen = body_sent(x)->len;
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
    if (blen > 0 || strcmp(x->method, "POST") == 0)
        sbuf_printf(&b, "Content-Length: %zu\r\n", blen);
    sbuf_str(&b, "\r\n");
    return b.cut ? -1 : (int)b.len;
}

/* Forget the head made for the last route: it held that route's key. */
static void wipe_head(struct call *c)
{
    if (c->head != NULL && c->head_route != NULL)
        explicit_bzero(c->head, c->head_len + 1); /* its NUL too */
    c->head_route = NULL;
}

/* Body and head for the current route, when it is not the one they were
 * made for; false after answering the client. */
static bool prepare_route(struct exchange *x, struct call *c, bool *keep)
{
    if (c->head_route == x->route)
        return true;
    wipe_head(c);
    if (body_for_route(x) != 0) {
        *keep = exchange_fail(x, 502, "upstream_error", "out of memory", false);
        return false;
    }
    int n = backend_head(x, c->head, BACKEND_HEAD_MAX);
    if (n < 0) {
        explicit_bzero(c->head, BACKEND_HEAD_MAX); /* cut somewhere: perhaps in the key */
        *keep = exchange_fail(x, 431, "headers_too_large",
                              "the request head is too large to forward", false);
        return false;
    }
    c->head_len = (size_t)n;
    c->head_route = x->route;
    return true;
}

/* ---- one attempt ------------------------------------------------------------- */

static enum attempt send_request(struct exchange *x, struct call *c, struct backend_conn *b,
                                 bool reused)
{
    const struct body_buffer *body = body_sent(x);
    enum io_result rc = stream_write_all(b->in.s, c->head, c->head_len, c->deadline);
    if (rc == IO_OK && body->len > 0)
        rc = stream_write_all(b->in.s, body->p, body->len, c->deadline);
    if (rc != IO_OK) {
        c->why = "the model backend closed the connection";
        return reused ? STALE : DOWN;
    }
    x->rec.bytes_up = body->len;
    return SENT;
}

static enum attempt read_answer(struct call *c, struct backend_conn *b, bool reused)
{
    switch (bufconn_read_response(&b->in, false, &c->r, c->deadline, &c->why)) {
    case RESPONSE_OK:
        if (http_transfer_coded(&c->r)) { /* de-chunked, still coded: not the JSON or SSE relayed */
            c->why = "the model backend used a transfer coding other than chunked";
            return MALFORMED;
        }
        if (c->r.status != 101) /* nobody asked to switch */
            return SENT;
        break;
    case RESPONSE_CLOSED:
        c->why = "the model backend closed the connection";
        return reused ? STALE : DOWN;
    case RESPONSE_TIMEOUT:
        c->why = "the model backend did not answer in time";
        return TIMED_OUT;
    case RESPONSE_TOO_LARGE:
    case RESPONSE_MALFORMED:
        break;
    }
    c->why = "the model backend sent a malformed response";
    return MALFORMED;
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

static const char *cut_reason(enum pump_result pr, const char *why)
{
    return pr == PUMP_TOO_LARGE ? "the response exceeds max_response_body"
           : pr == PUMP_TIMEOUT ? "the backend sent nothing for too long"
                                : why;
}

/* A buffered answer's body, whole, within the attempt. */
static enum attempt read_whole(struct exchange *x, struct call *c)
{
    const char *why = NULL;
    uint64_t moved;
    struct body_limits lim = {.max = x->lim->max_response_body,
                              .idle_ms = (int)x->route->stream_idle_timeout_ms,
                              .deadline = c->deadline,
                              .decode = true};
    struct body_sink sink = {body_buffer_put, &c->acc};
    c->pr = http_pump_body(&c->b->in, c->r.framing, c->r.content_length, &lim, &sink, &moved, &why);
    if (c->pr == PUMP_DONE)
        return SENT;
    snprintf(c->err, sizeof(c->err), "%s", cut_reason(c->pr, why));
    c->why = c->pr == PUMP_TOO_LARGE ? "the model backend's response is too large"
                                     : "the model backend's response was cut short";
    return CUT;
}

/* Once the head is in: what the client will need of it, then (buffered)
 * the body. */
static enum attempt take_answer(struct exchange *x, struct call *c)
{
    struct sbuf hb;
    sbuf_init(&hb, c->headers, HTTP_RESP_MAX);
    answer_headers(&c->r, &hb, &c->sse);
    reason_of(&c->b->in, &c->r, c->reason, sizeof(c->reason));
    bufconn_consume(&c->b->in, c->r.head_len); /* the head's pointers die here */
    return api_is_streamed(x->proto) ? SENT : read_whole(x, c);
}

/* One attempt on a pooled or fresh connection; c->b holds it when SENT. */
static enum attempt attempt_once(struct exchange *x, struct call *c, bool fresh)
{
    bool reused;
    c->b = backend_open(x->env, x->route, fresh, &reused, c->err, sizeof(c->err));
    if (c->b == NULL) {
        c->why = "the model backend is unavailable";
        return DOWN;
    }
    enum attempt a = send_request(x, c, c->b, reused);
    if (a == SENT)
        a = read_answer(c, c->b, reused);
    if (a == SENT)
        a = take_answer(x, c);
    return a;
}

/* May the connection carry another request once this answer's body is read? */
static bool answer_keeps_alive(const struct http_msg *r)
{
    return r->framing != BODY_UNTIL_CLOSE && !r->conn_close;
}

/* Done with the attempt's connection: kept when its answer ended cleanly. */
static void release(struct exchange *x, struct call *c, bool reusable)
{
    if (c->b != NULL)
        backend_done(x->env, c->b, reusable);
    c->b = NULL;
}

static enum attempt attempt_route(struct exchange *x, struct call *c)
{
    c->err[0] = '\0';
    c->why = NULL;
    body_buffer_free(&c->acc);
    enum attempt a = attempt_once(x, c, false);
    if (a == STALE) { /* a kept connection the backend had closed: once more, fresh */
        release(x, c, false);
        a = attempt_once(x, c, true);
    }
    if (a == STALE)
        a = DOWN;
    if (a != SENT && a != CUT)
        release(x, c, false);
    return a;
}

/* ---- what to do after an attempt ----------------------------------------------- */

static const char *result_of(enum attempt a, int status)
{
    switch (a) {
    case SENT:
        return status == 429 ? "429" : status >= 500 ? "5xx" : "answered";
    case TIMED_OUT:
        return "timeout";
    case MALFORMED:
        return "malformed";
    case CUT:
        return "cut";
    case STALE:
    case DOWN:
        break;
    }
    return "connect";
}

/* The retry_on class of an attempt's failure; 0: it is not one to retry.  A
 * timeout is not: the backend may still be working on it, and the time is
 * spent. */
static unsigned failure_class(const struct call *c, enum attempt a)
{
    if (a == DOWN || (a == CUT && (c->pr == PUMP_CUT || c->pr == PUMP_READ_ERROR)))
        return RETRY_ON_CONNECT;
    return a == SENT ? retry_class_of_status(c->r.status) : 0;
}

/* One attempt (number n; 0 for a fallback passed over) to the daemon. */
static void report(struct exchange *x, const struct route *r, unsigned n, const char *result,
                   const char *detail, int status, const struct route *next)
{
    struct attempt_record ar = {.route = r->name,
                                .protocol = x->rec.protocol,
                                .model = x->rec.model[0] ? x->rec.model : NULL,
                                .result = result,
                                .detail = detail,
                                .next = next ? next->name : NULL,
                                .status = status,
                                .attempt = n};
    if (x->env->attempt != NULL)
        x->env->attempt(x->env->log_ctx, &ar);
}

/* The next route of r's fallback chain that serves the protocol and whose
 * budgets admit the request (those that do not are reported); NULL: none. */
static const struct route *next_fallback(struct exchange *x, const struct route *r)
{
    const struct policy *p = x->env->pol;
    for (size_t hops = 0; r->fallback >= 0 && hops < policy_route_count(p); hops++) {
        r = policy_route(p, (size_t)r->fallback);
        struct budget_refusal why;
        char detail[160];
        if ((r->protocols & (1u << x->proto)) == 0)
            continue;
        if (budget_admit(x->env->budgets, p, r, &x->who, now_ms(), &x->admitted, &why))
            return r;
        snprintf(detail, sizeof(detail), "budget '%s': %s spent", why.budget, why.kind);
        report(x, r, 0, "budget", detail, -1, NULL);
    }
    return NULL;
}

/* After a failed attempt of class cls: the route to try next (the same one
 * after its backoff, or a fallback), or NULL to stop here. */
static const struct route *plan_next(struct exchange *x, struct call *c, unsigned cls)
{
    if (!retry_eligible(x->route->retry_on, cls, x->rp.head_sent) ||
        x->rec.attempts >= ATTEMPTS_MAX || now_ms() >= c->deadline)
        return NULL;
    if (c->retries_left > 0 && now_ms() + c->backoff_ms < c->deadline)
        return x->route;
    return next_fallback(x, x->route);
}

/* Wait before trying the same route again, or start afresh on a fallback. */
static void move_on(struct exchange *x, struct call *c, const struct route *next)
{
    if (next == x->route) {
        struct timespec ts = {c->backoff_ms / 1000, (long)(c->backoff_ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        c->retries_left--;
        c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
        return;
    }
    x->route = next;
    c->retries_left = next->retries;
    c->backoff_ms = BACKOFF_FIRST_MS;
}

/* Attempts until one answers for good or none is left; its outcome. */
static enum attempt run_attempts(struct exchange *x, struct call *c, bool *keep, bool *answered)
{
    for (;;) {
        x->rec.attempts++;
        if (x->route->scheme == ENDPOINT_MOCK) { /* canned answers: no backend */
            *answered = true;
            *keep = mock_answer(x);
            report(x, x->route, x->rec.attempts, "answered", NULL, 200, NULL);
            return SENT;
        }
        if (!prepare_route(x, c, keep)) {
            *answered = true;
            return MALFORMED;
        }
        enum attempt a = attempt_route(x, c);
        int status = a == SENT ? c->r.status : -1;
        const struct route *tried = x->route, *next = plan_next(x, c, failure_class(c, a));
        report(x, tried, x->rec.attempts, result_of(a, status), c->err[0] ? c->err : c->why, status,
               next);
        if (next == NULL)
            return a;
        /* a buffered answer was read whole: its connection is fit for reuse */
        release(x, c, a == SENT && !api_is_streamed(x->proto) && answer_keeps_alive(&c->r));
        move_on(x, c, next);
    }
}

/* ---- the answer to the client ------------------------------------------------- */

/* A piece of the answer on its way: token usage noted, then to the client. */
static int take_piece(void *ctx, const char *p, size_t n)
{
    struct exchange *x = ctx;
    usage_scan(&x->rec.usage, p, n);
    return reply_piece(&x->rp, p, n);
}

/* Stream the answer: head now, each piece as it comes.  True: keep-alive. */
static bool relay_streamed(struct exchange *x, struct call *c, bool *backend_ok)
{
    const struct http_msg *r = &c->r;
    const char *why = NULL;
    uint64_t moved;
    if (reply_head(&x->rp, r->status, c->reason, c->headers, -1) != 0)
        return false;
    struct body_limits lim = {.max = x->lim->max_response_body,
                              .idle_ms = (int)x->route->stream_idle_timeout_ms,
                              .decode = true};
    struct body_sink sink = {take_piece, x};
    enum pump_result pr =
        http_pump_body(&c->b->in, r->framing, r->content_length, &lim, &sink, &moved, &why);
    *backend_ok = pr == PUMP_DONE && answer_keeps_alive(r);
    if (pr == PUMP_DONE)
        return reply_end(&x->rp) == 0 && x->rp.chunked;
    why = x->rp.failed ? "the client went away" : cut_reason(pr, why);
    x->rec.error = "stream_cut";
    snprintf(x->rec.detail, sizeof(x->rec.detail), "%s", why);
    char ev[1024];
    int n = c->sse ? sse_error_event(ev, sizeof(ev), why) : -1;
    if (!x->rp.failed && n > 0 && reply_piece(&x->rp, ev, (size_t)n) == 0)
        reply_end(&x->rp);
    /* not SSE: no final chunk, so the client sees a cut message, not a short one */
    return false;
}

/* The last attempt's outcome, as the client gets it.  True: keep-alive. */
static bool answer_client(struct exchange *x, struct call *c, enum attempt a)
{
    bool keep = false, backend_ok = false;
    snprintf(x->rec.detail, sizeof(x->rec.detail), "%s", c->err[0] ? c->err : c->why ? c->why : "");
    if (a == SENT) {
        x->rec.status = c->r.status;
        x->rec.detail[0] = '\0';
    }
    if (a == SENT && api_is_streamed(x->proto)) {
        keep = relay_streamed(x, c, &backend_ok);
    } else if (a == SENT) {
        backend_ok = answer_keeps_alive(&c->r);
        const char *body = c->acc.p ? c->acc.p : "";
        usage_scan(&x->rec.usage, body, c->acc.len);
        keep = reply_whole(&x->rp, c->r.status, c->reason, c->headers, body, c->acc.len) == 0;
    } else if (a == CUT) {
        keep = exchange_fail(x, 502, "upstream_error", c->why, false);
    } else {
        bool malformed = a == MALFORMED;
        keep = exchange_fail(x, malformed ? 502 : 503,
                             malformed ? "upstream_error" : "upstream_unavailable",
                             c->why ? c->why : "the model backend is unavailable", true);
    }
    release(x, c, backend_ok);
    return keep;
}

bool call_backend(struct exchange *x)
{
    struct call c = {.head = malloc(BACKEND_HEAD_MAX),
                     .headers = malloc(HTTP_RESP_MAX),
                     .deadline = now_ms() + x->route->timeout_ms, /* all attempts together */
                     .retries_left = x->route->retries,
                     .backoff_ms = BACKOFF_FIRST_MS};
    bool keep = false, answered = false;
    if (c.head == NULL || c.headers == NULL) {
        keep = exchange_fail(x, 502, "upstream_error", "out of memory", false);
    } else {
        enum attempt a = run_attempts(x, &c, &keep, &answered);
        if (!answered)
            keep = answer_client(x, &c, a);
    }
    wipe_head(&c);
    free(c.head);
    free(c.headers);
    body_buffer_free(&c.acc);
    return keep && x->minor == 1 && !x->client_close;
}
