/*
 * intercept.c - CONNECT tunnels and plain requests to inference hosts.
 *
 * After "200 Connection Established" the client may speak TLS (an https://
 * base URL) or plain HTTP (an http:// base URL behind HTTPS_PROXY-style
 * tunnelling).  The first bytes are peeked with recv(MSG_PEEK), never
 * consumed, so that whichever side reads next sees them whole: mbedTLS for
 * a ClientHello, the inference loop for a request line.  Bytes that came
 * with the CONNECT head were already read; they are classified first and
 * handed on with the stream.  Request rules still apply to each call: a
 * deny rule with methods or paths refuses it in the API's error shape.
 */
#include "proxy.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PARTIAL_WAIT_MS 100 /* a prefix of TLS or HTTP: wait this long for the rest */
#define PATH_VIEW       2048
#define PEEK_BYTES      (PEEK_TOKEN_MAX + 1)

/* An intercepted connection, as the inference module's callbacks see it. */
struct intercepted {
    struct conn *c;
    const struct host *h;
    uint16_t port;
    struct snapshot *cur; /* c->snap, or a newer one held after a reload */
    unsigned generation;
    bool ended; /* a reload ended the interception */
};

/* The fields every line about an intercepted call starts from. */
static struct log_fields intercept_fields(const struct intercepted *ix, const char *event)
{
    struct log_fields f = LOG_FIELDS_INIT;
    f.event = event;
    f.src = ix->c->src;
    f.action = "intercept";
    f.host = ix->h->name;
    f.port = ix->port;
    return f;
}

static void log_inference(void *ctx, const struct inference_record *r)
{
    struct intercepted *ix = ctx;
    struct log_fields f = intercept_fields(ix, "inference");
    f.route = r->route;
    f.protocol = r->protocol;
    f.model = r->model[0] ? r->model : NULL;
    f.status = r->status;
    f.reason = r->error ? r->error : "routed";
    f.detail = r->detail[0] ? r->detail : NULL;
    f.bytes_up = (long long)r->bytes_up;
    f.bytes_down = (long long)r->bytes_down;
    f.duration_ms = r->duration_ms;
    f.tokens_in = r->usage.in;
    f.tokens_out = r->usage.out;
    f.attempts = r->attempts > 0 ? (long)r->attempts : -1;
    log_event(r->status >= 500 ? LOGL_WARN : LOGL_INFO, &f);
    metrics_inference(r->route, r->status);
    metrics_tokens(r->route, r->usage.in, r->usage.out);
    metrics_bytes(r->bytes_up, r->bytes_down);
    if (r->error != NULL)
        metrics_upstream_error(r->error);
}

/* Every attempt is counted; one that did not answer for good is logged. */
static void log_attempt(void *ctx, const struct attempt_record *a)
{
    struct intercepted *ix = ctx;
    metrics_attempt(a->route, a->result);
    if (strcmp(a->result, "answered") == 0)
        return;
    struct log_fields f = intercept_fields(ix, "inference_attempt");
    f.route = a->route;
    f.protocol = a->protocol;
    f.model = a->model;
    f.attempt = a->attempt > 0 ? (long)a->attempt : -1;
    f.next_route = a->next;
    f.status = a->status;
    f.reason = a->result;
    f.detail = a->detail;
    log_event(LOGL_WARN, &f);
}

static const struct identity *caller_cb(void *ctx)
{
    struct intercepted *ix = ctx;
    return conn_identity(ix->c);
}

/* Request rules on an inference host: a deny rule with methods or paths
 * refuses a call in the API's own error shape (an audited one passes). */
static bool denied_cb(void *ctx, const char *method, const char *path, const char **rule,
                      const char **message)
{
    struct intercepted *ix = ctx;
    char view[PATH_VIEW], folded[PATH_VIEW];
    const char *why;
    struct policy_decision d;
    if (http_path_view(path, strlen(path), view, sizeof(view), folded, sizeof(folded), &why) != 0)
        return false; /* what cannot be viewed is no API call: refused as not_inference */
    /* No override field: an inference call is routed by its path, and what
     * it carries goes to the operator's backend, not to the host ruled on. */
    struct request_view rq = {method, view, folded, NULL};
    policy_decide_request(ix->cur->pol, ix->h, ix->port, ix->c->id, &rq, &d);
    if (d.action != ACTION_DENY)
        return false;
    struct log_fields f = LOG_FIELDS_INIT;
    struct http_error_info info = {.e = &ERR_POLICY_DENIED,
                                   .method = method,
                                   .path = view,
                                   .rule = d.rule,
                                   .detail = d.reason};
    f.host = ix->h->name;
    f.port = ix->port;
    conn_note_denial(ix->c, &f, &info, DENIAL_REQUEST);
    *rule = d.rule;
    *message = d.message ? d.message : d.reason;
    return true;
}

static int dial_cb(void *ctx, const char *host, uint16_t port, char *err, size_t errlen)
{
    struct intercepted *ix = ctx;
    return dial_backend(ix->c->set, host, port, err, errlen);
}

/* A kept-alive intercepted connection follows reloads between requests. */
static bool refresh(void *ctx, struct inference_env *env)
{
    struct intercepted *ix = ctx;
    struct policy_decision d;
    struct snapshot *s = conn_redecide(ix->c, ix->h, ix->port, &ix->generation, &d);
    if (s == NULL)
        return true;
    if (d.action != ACTION_INTERCEPT || s->ic == NULL) {
        snapshot_unref(s);
        ix->ended = true;
        return false;
    }
    if (ix->cur != ix->c->snap)
        snapshot_unref(ix->cur);
    ix->cur = s;
    env->pol = s->pol;
    env->tls = s->ic->tls_client;
    env->pool = s->ic->pool;
    return true;
}

static void make_env(struct intercepted *ix, struct inference_env *env)
{
    const struct intercept *ic = ix->c->snap->ic;
    *env = (struct inference_env){.pol = ix->c->pol,
                                  .tls = ic->tls_client,
                                  .pool = ic->pool,
                                  .dial = dial_cb,
                                  .dial_ctx = ix,
                                  .log = log_inference,
                                  .attempt = log_attempt,
                                  .log_ctx = ix,
                                  .budgets = ix->c->rt->budgets,
                                  .caller = caller_cb,
                                  .caller_ctx = ix,
                                  .refresh = refresh,
                                  .refresh_ctx = ix,
                                  .denied = denied_cb,
                                  .denied_ctx = ix};
}

/* Classify the first bytes: those read with the head, then peeked ones. */
static enum peek_kind peek_first(struct conn *c, int64_t deadline, const char **why)
{
    unsigned char look[HTTP_HEAD_MAX + PEEK_BYTES];
    size_t have = c->in.len < HTTP_HEAD_MAX ? c->in.len : HTTP_HEAD_MAX;
    memcpy(look, c->in.buf, have);
    enum peek_kind k = http_peek_classify(look, have);
    int64_t partial_deadline = 0;
    while (k == PEEK_MORE) {
        int64_t left = (partial_deadline ? partial_deadline : deadline) - now_ms();
        if (left <= 0 || fd_wait(c->fd, POLLIN, (int)left) <= 0) {
            *why = partial_deadline ? "a partial first message" : "no bytes after the 200";
            return PEEK_OTHER;
        }
        ssize_t n = recv(c->fd, look + have, PEEK_BYTES, MSG_PEEK);
        if (n <= 0) {
            *why = n == 0 ? "client closed the tunnel" : "peek failed";
            return PEEK_OTHER;
        }
        k = http_peek_classify(look, have + (size_t)n);
        if (k == PEEK_MORE) {
            if (partial_deadline == 0)
                partial_deadline = now_ms() + PARTIAL_WAIT_MS;
            usleep(5000); /* the bytes so far stay readable: poll would not wait */
        }
    }
    *why = "unsupported_protocol";
    return k;
}

struct stream *tunnel_accept_client(struct conn *c, const struct host *h, struct tls_server *ts,
                                    struct log_fields *f, bool *ok)
{
    const char *why = NULL;
    char err[256];
    int64_t deadline = now_ms() + c->set->header_timeout_ms; /* the 200, the peek, the handshake */
    *ok = false;
    f->src = c->src;
    if (fd_write_all(c->fd, CONNECT_ESTABLISHED, sizeof(CONNECT_ESTABLISHED) - 1, deadline) !=
        IO_OK) {
        f->reason = "client went away before the 200";
        log_event(LOGL_INFO, f);
        return NULL;
    }
    f->status = 200;
    log_event(LOGL_INFO, f);
    f->event = "close";
    enum peek_kind k = peek_first(c, deadline, &why);
    if (k == PEEK_HTTP) {
        *ok = true;
        return NULL; /* plain HTTP on the client's own stream */
    }
    if (k != PEEK_TLS) {
        f->reason = "unsupported_protocol";
        f->detail = why;
        log_event(LOGL_INFO, f);
        return NULL;
    }
    struct stream *tls =
        tls_server_accept(ts, c->fd, h->name, c->in.buf, c->in.len, deadline, err, sizeof(err));
    if (tls == NULL) {
        f->reason = "tls_handshake_failed";
        f->detail = err;
        log_event(LOGL_INFO, f);
        return NULL;
    }
    *ok = true;
    return tls;
}

void intercept_tunnel(struct conn *c, const struct host *h, struct log_fields *f)
{
    bool ok;
    f->action = "intercept";
    struct stream *tls = tunnel_accept_client(c, h, c->snap->ic->tls_server, f, &ok);
    if (!ok)
        return;
    struct bufconn cl = c->in; /* plain: the client's stream and what came with the head */
    if (tls != NULL)           /* TLS: the handshake took what came with the head */
        bufconn_init(&cl, tls, c->buf, HTTP_HEAD_MAX);
    struct inference_env env;
    struct intercepted ix = {c, h, (uint16_t)f->port, c->snap, c->generation, false};
    make_env(&ix, &env);
    inference_serve(&env, &cl, (int)c->set->header_timeout_ms);
    stream_free(tls); /* before c->snap goes: the session uses its CA's configuration */
    if (ix.cur != c->snap)
        snapshot_unref(ix.cur);
    f->reason = ix.ended ? "closed by reload: no longer intercepted" : tls ? "tls" : "plaintext";
    f->duration_ms = now_ms() - c->t0;
    log_event(LOGL_INFO, f);
}

bool intercept_forward(struct conn *c, const struct http_msg *m, const struct host *h,
                       uint16_t port)
{
    struct inference_env env;
    struct intercepted ix = {c, h, port, c->snap, c->generation, false};
    make_env(&ix, &env);
    env.refresh = NULL; /* the forward loop follows reloads itself */
    return inference_serve_request(&env, &c->in, m);
}
