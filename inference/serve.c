/*
 * serve.c - the requests of an intercepted connection, each from its head
 * to its logged answer.
 *
 * A request is recognised (api.c) or refused with 403 not_inference; its
 * path must read the same to every server; its body is read whole (bounded
 * by max_request_body, and by header_timeout once the head is in) because
 * routing may need the model and a rewrite replaces it, and it must be one
 * JSON object naming its model one way only.  Then a route is chosen, the
 * budgets covering it admit the request or refuse it with 429, and the
 * call is made (call.c: to the backend, or the mock), or egressd answers a
 * model listing itself when the route gives aliases.  When the request is over,
 * the tokens its answer reported go into the budgets of the route that
 * answered.  Between requests the connection follows reloads through the
 * refresh callback.
 */
#include "infer_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REQUEST_MAX_CHUNKS 65536
#define ANSWER_IO_MS       2000 /* an error answered outside a request */

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

/* The client headers that pass, as lines; false when they do not fit: a
 * cut line would run into the key line that backend_head writes next. */
static bool copy_forwardable(struct exchange *x, const struct http_msg *m)
{
    struct sbuf b;
    sbuf_init(&b, x->fwd, sizeof(x->fwd));
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http_header *h = &m->headers[i];
        if (!header_forwardable(h))
            continue;
        x->has_anthropic_version |= http_name_is(h, "anthropic-version");
        sbuf_add(&b, h->name, h->name_len);
        sbuf_str(&b, ": ");
        sbuf_add(&b, h->value, h->value_len);
        sbuf_str(&b, "\r\n");
    }
    x->fwd_len = b.cut ? 0 : b.len;
    return !b.cut;
}

/* The body, whole, by the deadline; false when the client got an error. */
static bool read_body(struct exchange *x, enum http_framing framing, uint64_t length,
                      int64_t deadline, bool *keep)
{
    struct body_limits lim = {.max = x->lim->max_request_body,
                              .max_chunks = REQUEST_MAX_CHUNKS,
                              .idle_ms = (int)(deadline - now_ms()),
                              .deadline = deadline,
                              .decode = true};
    struct body_sink sink = {body_buffer_put, &x->body};
    const char *why = NULL;
    uint64_t moved;
    switch (http_pump_body(x->cl, framing, length, &lim, &sink, &moved, &why)) {
    case PUMP_DONE:
        return true;
    case PUMP_TOO_LARGE:
        *keep = exchange_fail(x, 413, "body_too_large", "the request body exceeds max_request_body",
                              false);
        return false;
    case PUMP_TIMEOUT:
        *keep = exchange_fail(x, 408, "request_timeout", "the request body did not arrive in time",
                              false);
        return false;
    case PUMP_SINK_FAILED:
        *keep = exchange_fail(x, 502, "upstream_error", "out of memory", false);
        return false;
    default:
        *keep = exchange_fail(x, 400, "bad_request", "the request body is malformed or incomplete",
                              false);
        return false;
    }
}

/* The model a /v1/models/{id} call names. */
static void model_of_path(struct exchange *x)
{
    const char *id = x->path + strlen("/v1/models");
    if (*id == '/')
        snprintf(x->rec.model, sizeof(x->rec.model), "%.*s", (int)strcspn(id + 1, "?"), id + 1);
    x->has_model = x->rec.model[0] != '\0';
}

/* The request's model (for routing and logs) and stream flag: 0, or -1
 * with *why when the body must be refused (not one JSON object, or one that
 * a backend could read another model from). */
static int read_model(struct exchange *x, const char **why)
{
    static const char *const keys[] = {"model", "stream"};
    struct json_span spans[2];
    const char *js = x->body.p;
    if (x->proto == PROTO_MODEL_DISCOVERY) {
        model_of_path(x);
        return 0;
    }
    if (x->body.len == 0)
        return 0;
    if (json_object_scan(js, x->body.len, keys, 2, spans, why) != JSON_OK)
        return -1;
    x->model = spans[0];
    if (spans[0].found && js[spans[0].start] == '"') {
        if (json_string(js + spans[0].start, spans[0].end - spans[0].start, x->rec.model,
                        sizeof(x->rec.model), why) < 0)
            return -1; /* a NUL, or longer than any model name: a backend would read it otherwise */
        x->has_model = true;
    }
    x->stream = spans[1].found && spans[1].end - spans[1].start == 4 &&
                memcmp(js + spans[1].start, "true", 4) == 0;
    return 0;
}

/* A model listing of a route that gives aliases, answered by egressd: the
 * names the sandbox may ask for, rather than the backend's own.  False
 * when the route has none, or the model asked for is not one of them. */
static bool answer_models(struct exchange *x, bool *keep)
{
    if (x->route->n_model_map == 0)
        return false;
    size_t cap = 512 + (x->route->n_model_map + x->route->n_models) * (2 * ROUTE_MODEL_MAX + 96);
    char *buf = malloc(cap);
    struct sbuf b;
    if (buf == NULL) {
        *keep = exchange_fail(x, 502, "upstream_error", "out of memory", false);
        return true;
    }
    sbuf_init(&b, buf, cap);
    bool ours = true;
    if (x->has_model)
        ours = alias_model_body(&b, x->route, x->rec.model);
    else
        alias_list_body(&b, x->route);
    if (ours && b.cut) { /* never a cut JSON body */
        *keep = exchange_fail(x, 502, "upstream_error", "the model list is too large", false);
    } else if (ours) {
        x->rec.status = 200;
        *keep = reply_whole(&x->rp, 200, "OK", "Content-Type: application/json\r\n", b.buf,
                            b.len) == 0 &&
                x->minor == 1 && !x->client_close;
    }
    free(buf);
    return ours;
}

static bool route_and_answer(struct exchange *x)
{
    x->route = route_select(x->env->pol, x->proto, x->has_model ? x->rec.model : NULL);
    if (x->route == NULL) {
        char msg[400];
        bool none = policy_route_count(x->env->pol) == 0;
        snprintf(msg, sizeof(msg),
                 none ? "egressd has no inference route configured"
                      : "no route serves %s for model '%s'",
                 protocol_name(x->proto), x->rec.model);
        return exchange_fail(x, none ? 503 : 400, "no_route", msg, true);
    }
    x->rec.route = x->route->name;
    bool keep;
    if (x->proto == PROTO_MODEL_DISCOVERY && answer_models(x, &keep))
        return keep;
    /* listing models spends no tokens: budgets count and refuse the other calls */
    struct budget_refusal why;
    if (x->proto != PROTO_MODEL_DISCOVERY && !budget_admit(x->env->budgets, x->env->pol, x->route,
                                                           &x->who, now_ms(), &x->admitted, &why))
        return exchange_limited(x, &why);
    keep = call_backend(x);
    x->rec.route = x->route->name; /* the route that answered */
    return keep;
}

/* The head: a call egressd serves, on a path every server reads alike. */
static bool recognise(struct exchange *x, const struct http_msg *m, bool *keep)
{
    const char *why;
    if (target_path(m, x->path, sizeof(x->path)) != 0 || m->method_len >= sizeof(x->method)) {
        *keep = exchange_fail(x, 400, "bad_request", "malformed request target", false);
        return false;
    }
    if (http_path_check(x->path, strlen(x->path), &why) != 0) {
        *keep = exchange_fail(x, 400, "bad_request", why, false);
        return false;
    }
    memcpy(x->method, m->method, m->method_len);
    x->method[m->method_len] = '\0';
    if (strncmp(x->path, "/v1/messages", 12) == 0 || http_header_find(m, "anthropic-version"))
        x->style = STYLE_ANTHROPIC;
    const char *message = NULL;
    if (x->env->denied != NULL &&
        x->env->denied(x->env->denied_ctx, x->method, x->path, &x->denied_rule, &message)) {
        *keep = exchange_fail(x, 403, "policy_denied", message, false);
        return false;
    }
    if (api_match(x->method, m->method_len, x->path, strlen(x->path), &x->proto) != 0) {
        *keep = exchange_fail(x, 403, "not_inference",
                              "egressd intercepts this host for inference API calls only", false);
        return false;
    }
    x->rec.protocol = protocol_name(x->proto);
    return true;
}

/* `Expect: 100-continue`: egressd reads the body itself, so it asks for it
 * at once rather than let the client wait for a 100 (curl: a second). */
static bool ask_for_body(struct exchange *x, const struct http_msg *m)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (!m->expect_continue || m->minor != 1 || m->framing == BODY_NONE)
        return true;
    return stream_write_all(x->cl->s, cont, sizeof(cont) - 1, now_ms() + x->rp.io_ms) == IO_OK;
}

static bool serve_parsed(struct exchange *x, const struct http_msg *m)
{
    /* the body follows its head at once: it too must come within header_timeout */
    int64_t body_deadline = now_ms() + policy_settings(x->env->pol)->header_timeout_ms;
    const char *why;
    bool keep = false;
    if (!recognise(x, m, &keep))
        return keep;
    if (!copy_forwardable(x, m))
        return exchange_fail(x, 431, "headers_too_large",
                             "the request's headers are too large to forward", false);
    if (!ask_for_body(x, m))
        return false; /* the client went away */
    enum http_framing framing = m->framing;
    uint64_t length = m->content_length;
    bufconn_consume(x->cl, m->head_len); /* m's pointers die here */
    if (!read_body(x, framing, length, body_deadline, &keep))
        return keep;
    if (read_model(x, &why) != 0)
        return exchange_fail(x, 400, "bad_request", why, true);
    return route_and_answer(x);
}

bool inference_serve_request(const struct inference_env *env, struct bufconn *cl,
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
        .s = cl->s, .io_ms = (int)x->lim->stream_idle_timeout_ms, .chunked = m->minor == 1};
    x->rec.usage = (struct usage){-1, -1};
    x->who = (struct caller){.lookup = env->caller, .ctx = env->caller_ctx};
    bool keep = serve_parsed(x, m);
    x->rec.bytes_down = x->rp.bytes;
    x->rec.duration_ms = now_ms() - x->t0;
    if (x->route != NULL)
        budget_charge(env->budgets, env->pol, x->route, &x->who, &x->rec.usage, now_ms());
    if (env->log != NULL)
        env->log(env->log_ctx, &x->rec);
    body_buffer_free(&x->body);
    body_buffer_free(&x->rewritten);
    free(x);
    return keep;
}

/* An error for a request that never became one (bad head, reload). */
static void answer_outside(struct bufconn *cl, int status, const char *code, const char *message)
{
    struct exchange x = {.cl = cl, .minor = 1, .rp = {.s = cl->s, .io_ms = ANSWER_IO_MS}};
    exchange_fail(&x, status, code, message, false);
}

/* The next head: true when one is in; false after answering what went wrong. */
static bool next_head(struct bufconn *cl, int wait_ms, struct http_msg *m)
{
    const char *why;
    enum head_status st = bufconn_read_head(cl, now_ms() + wait_ms);
    if (st == HEAD_TOO_LARGE)
        answer_outside(cl, 431, "headers_too_large", "request head larger than 8 KiB");
    else if (st == HEAD_TIMEOUT && cl->len > 0)
        answer_outside(cl, 408, "request_timeout", "request head not received in time");
    if (st != HEAD_OK)
        return false; /* gone, or idle between requests: a quiet close */
    if (http_parse_request(cl->buf, cl->len, m, &why) == HTTP_OK)
        return true;
    answer_outside(cl, 400, "bad_request", why);
    return false;
}

void inference_serve(const struct inference_env *first_env, struct bufconn *cl, int first_wait_ms)
{
    struct inference_env now = *first_env, *env = &now;
    int wait_ms = first_wait_ms;
    for (;;) {
        struct http_msg m;
        if (!next_head(cl, wait_ms, &m))
            return;
        /* the first request too: a reload may have come since the CONNECT */
        if (env->refresh != NULL && !env->refresh(env->refresh_ctx, env)) {
            answer_outside(
                cl, 403, "policy_denied",
                "egressd no longer intercepts this destination (its configuration was reloaded)");
            return;
        }
        if (!inference_serve_request(env, cl, &m))
            return;
        wait_ms = (int)policy_inference(env->pol)->keepalive_timeout_ms;
    }
}
