/*
 * api.c - the inference APIs as data: the table of recognised calls, route
 * selection and a route's model aliases, the backend path, the request
 * headers that may pass, which failures may be tried again, error bodies
 * in the shape of each API, the SSE event that reports a cut stream, and
 * token usage as backends report it.
 */
#include "inference.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct api_call {
    const char *method, *path;
    bool prefix; /* path followed by one more segment: /v1/models/{id} */
    enum protocol proto;
};

static const struct api_call calls[] = {
    {"POST", "/v1/chat/completions", false, PROTO_OPENAI_CHAT},
    {"POST", "/v1/completions", false, PROTO_OPENAI_COMPLETIONS},
    {"POST", "/v1/responses", false, PROTO_OPENAI_RESPONSES},
    {"POST", "/v1/messages", false, PROTO_ANTHROPIC_MESSAGES},
    {"POST", "/v1/embeddings", false, PROTO_OPENAI_EMBEDDINGS},
    {"GET", "/v1/models", false, PROTO_MODEL_DISCOVERY},
    {"GET", "/v1/models/", true, PROTO_MODEL_DISCOVERY},
};

int api_match(const char *method, size_t mlen, const char *path, size_t plen, enum protocol *proto)
{
    const char *q = memchr(path, '?', plen);
    if (q != NULL)
        plen = (size_t)(q - path); /* a query string does not change the call */
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        const struct api_call *c = &calls[i];
        size_t n = strlen(c->path);
        if (strlen(c->method) != mlen || memcmp(method, c->method, mlen) != 0)
            continue;
        bool ok = c->prefix ? plen > n && memcmp(path, c->path, n) == 0 &&
                                  memchr(path + n, '/', plen - n) == NULL
                            : plen == n && memcmp(path, c->path, n) == 0;
        if (ok) {
            *proto = c->proto;
            return 0;
        }
    }
    return -1;
}

bool api_is_streamed(enum protocol proto)
{
    return proto != PROTO_OPENAI_EMBEDDINGS && proto != PROTO_MODEL_DISCOVERY;
}

static bool model_allowed(const struct route *r, const char *model)
{
    if (r->n_models == 0)
        return true;
    if (model == NULL)
        return false;
    for (size_t i = 0; i < r->n_models; i++)
        if (fnmatch(r->models[i], model, 0) == 0)
            return true;
    return false;
}

const struct route *route_select(const struct policy *p, enum protocol proto, const char *model)
{
    for (size_t i = 0; i < policy_route_count(p); i++) {
        const struct route *r = policy_route(p, i);
        if ((r->protocols & (1u << proto)) == 0)
            continue;
        /* listing models is not a request for one: the filter does not apply */
        if (proto == PROTO_MODEL_DISCOVERY || model_allowed(r, model))
            return r;
    }
    return NULL;
}

const char *route_model_for(const struct route *r, const char *requested)
{
    for (size_t i = 0; requested != NULL && i < r->n_model_map; i++)
        if (fnmatch(r->model_map[i].from, requested, 0) == 0)
            return r->model_map[i].to;
    return r->model[0] ? r->model : NULL;
}

static bool is_glob(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

/* Listed already, among the first n aliases or the first m models? */
static bool listed(const struct route *r, size_t n, size_t m, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(r->model_map[i].from, name) == 0)
            return true;
    for (size_t i = 0; i < m; i++)
        if (strcmp(r->models[i], name) == 0)
            return true;
    return false;
}

static void model_object(struct sbuf *b, const char *id)
{
    char esc[2 * ROUTE_MODEL_MAX];
    json_escape(esc, sizeof(esc), id);
    sbuf_printf(b, "{\"id\":\"%s\",\"object\":\"model\",\"created\":0,\"owned_by\":\"egressd\"}",
                esc);
}

void alias_list_body(struct sbuf *b, const struct route *r)
{
    bool first = true;
    sbuf_str(b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < r->n_model_map; i++) {
        const char *name = r->model_map[i].from;
        if (is_glob(name) || listed(r, i, 0, name))
            continue;
        sbuf_str(b, first ? "" : ",");
        model_object(b, name);
        first = false;
    }
    for (size_t i = 0; i < r->n_models; i++) {
        if (is_glob(r->models[i]) || listed(r, r->n_model_map, i, r->models[i]))
            continue;
        sbuf_str(b, first ? "" : ",");
        model_object(b, r->models[i]);
        first = false;
    }
    sbuf_str(b, "]}");
}

bool alias_model_body(struct sbuf *b, const struct route *r, const char *id)
{
    bool known = false;
    for (size_t i = 0; i < r->n_model_map && !known; i++)
        known = fnmatch(r->model_map[i].from, id, 0) == 0;
    if (!known && !is_glob(id))
        known = listed(r, 0, r->n_models, id);
    if (known)
        model_object(b, id);
    return known;
}

unsigned retry_class_of_status(int status)
{
    return status == 429 ? RETRY_ON_429 : status >= 500 && status <= 599 ? RETRY_ON_5XX : 0;
}

bool retry_eligible(unsigned retry_on, unsigned cls, bool head_sent)
{
    return !head_sent && cls != 0 && (retry_on & cls) != 0;
}

const char *api_limit_code(enum err_style style)
{
    return style == STYLE_ANTHROPIC ? "rate_limit_error" : "rate_limit_exceeded";
}

int path_join(char *out, size_t cap, const char *base, const char *path, size_t plen)
{
    size_t blen = strlen(base);
    /* endpoint ".../v1" and path "/v1/...": one /v1, not two */
    if (blen >= 3 && strcmp(base + blen - 3, "/v1") == 0 && plen >= 3 &&
        memcmp(path, "/v1", 3) == 0 && (plen == 3 || path[3] == '/' || path[3] == '?')) {
        path += 3;
        plen -= 3;
    }
    int n = snprintf(out, cap, "%s%.*s", base, (int)plen, path);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    if (out[0] == '\0' || out[0] == '?') { /* an empty path is "/" */
        if ((size_t)n + 1 >= cap)
            return -1;
        memmove(out + 1, out, (size_t)n + 1);
        out[0] = '/';
    }
    return 0;
}

bool header_forwardable(const struct http_header *h)
{
    static const char *const names[] = {
        "content-type",        "accept",      "accept-encoding",   "user-agent",
        "openai-organization", "openai-beta", "anthropic-version", "anthropic-beta"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (http_name_is(h, names[i]))
            return true;
    return false;
}

int api_error_body(char *out, size_t cap, enum err_style style, const char *code,
                   const char *message)
{
    char msg[600];
    json_escape(msg, sizeof(msg), message);
    int n = style == STYLE_ANTHROPIC
                ? snprintf(out, cap,
                           "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"%s\"}}",
                           code, msg)
                : snprintf(
                      out, cap,
                      "{\"error\":{\"message\":\"%s\",\"type\":\"egressd_error\",\"code\":\"%s\"}}",
                      msg, code);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int sse_error_event(char *out, size_t cap, const char *why)
{
    char msg[400], esc[900];
    snprintf(msg, sizeof(msg), "response truncated: %s", why);
    json_escape(esc, sizeof(esc), msg);
    int n =
        snprintf(out, cap,
                 "data: {\"error\":{\"message\":\"%s\",\"type\":\"proxy_stream_error\"}}\n\n", esc);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* The number after "key": at each place key appears; the last one wins. */
static void scan_key(long long *v, const char *p, size_t n, const char *key)
{
    size_t klen = strlen(key);
    for (const char *q = p; (q = memmem(q, n - (size_t)(q - p), key, klen)) != NULL; q += klen) {
        const char *r = q + klen, *end = p + n;
        while (r < end && (*r == ' ' || *r == ':'))
            r++;
        if (r < end && isdigit((unsigned char)*r)) {
            long long x = 0;
            while (r < end && isdigit((unsigned char)*r) && x < 1000000000000LL)
                x = x * 10 + (*r++ - '0');
            *v = x;
        }
    }
}

void usage_scan(struct usage *u, const char *p, size_t n)
{
    if (memmem(p, n, "_tokens\"", 8) == NULL)
        return; /* the common case for a streamed piece: nothing to find */
    scan_key(&u->in, p, n, "\"prompt_tokens\"");
    scan_key(&u->in, p, n, "\"input_tokens\"");
    scan_key(&u->out, p, n, "\"completion_tokens\"");
    scan_key(&u->out, p, n, "\"output_tokens\"");
}
