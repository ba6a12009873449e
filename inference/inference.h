/*
 * inference.h - the public face of the inference module: serving the
 * OpenAI- and Anthropic-style calls of an intercepted connection.
 *
 * A request is recognised by method and path (the API table), its body is
 * read whole and checked (one JSON object, one model), a route is chosen
 * and the call goes to the operator's backend with the operator's key, or
 * to the canned mock; the answer streams back piece by piece.  The daemon
 * hands in what the module must not know about (how to dial, how to log,
 * how to follow a reload) as callbacks in struct inference_env: nothing
 * here calls up into proxy/.
 *
 * Error convention: servers return a bool, true when the connection may
 * carry another request; lookups return the thing found or NULL / -1.
 */
#ifndef EGRESSD_INFERENCE_H
#define EGRESSD_INFERENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../http/http.h"
#include "../policy/policy.h"

/* ---- api.c: the APIs as data ---- */

/* The protocol of a call (method and origin-form path), or -1 when egressd
 * does not serve it. */
int api_match(const char *method, size_t mlen, const char *path, size_t plen, enum protocol *proto);
/* Streamed protocols relay the answer as it comes; the others buffer it. */
bool api_is_streamed(enum protocol proto);
/* The first route serving proto whose models filter admits model (NULL: the
 * request named none). */
const struct route *route_select(const struct policy *p, enum protocol proto, const char *model);
/* The model route r's backend gets for a request naming requested (NULL:
 * none): the first model_map entry matching it (exact or glob), else the
 * route's `model`; NULL when the request's own model goes as it is. */
const char *route_model_for(const struct route *r, const char *requested);
/* GET /v1/models of a route with model_map, answered by egressd in
 * OpenAI's shape: the names the sandbox may ask for (the aliases, then the
 * `models` entries, globs left out).  The caller checks b->cut. */
void alias_list_body(struct sbuf *b, const struct route *r);
/* GET /v1/models/{id}: the model object when id is a name of that list
 * (or matches an alias glob); false, writing nothing, when it is not. */
bool alias_model_body(struct sbuf *b, const struct route *r, const char *id);
/* The backend path: base (the endpoint's path) + path, one "/v1" where both
 * have it.  0, or -1 when it does not fit. */
int path_join(char *out, size_t cap, const char *base, const char *path, size_t plen);
/* Is this client header one the backend may see? */
bool header_forwardable(const struct http_header *h);

/* Retries: the retry_on class of an answer's status (0: not one), and
 * whether an attempt that failed in class cls may be made again: only a
 * class the route's retry_on names, and only while nothing of the answer
 * has gone to the client (head_sent). */
unsigned retry_class_of_status(int status);
bool retry_eligible(unsigned retry_on, unsigned cls, bool head_sent);

enum err_style { STYLE_OPENAI, STYLE_ANTHROPIC };
/* An error body in the shape the API's SDKs show; its length or -1. */
int api_error_body(char *out, size_t cap, enum err_style style, const char *code,
                   const char *message);
/* The code each API gives a rate limit (its SDKs raise their rate-limit
 * error on it): OpenAI's rate_limit_exceeded, Anthropic's rate_limit_error. */
const char *api_limit_code(enum err_style style);
/* The one SSE event that tells a client its stream was cut; length or -1. */
int sse_error_event(char *out, size_t cap, const char *why);

struct usage {
    long long in, out; /* -1: not reported */
};
void usage_scan(struct usage *u, const char *p, size_t n);

/* ---- budget.c: what [budget NAME] sections have used ---- */

/* The daemon's, for its whole life: budgets found by name, so that a
 * reload that keeps a budget's name keeps its usage.  Thread-safe. */
struct budget_registry;
struct budget_registry *budget_registry_new(void);
void budget_registry_free(struct budget_registry *reg);
/* Hold the budgets of p from now on: kept names keep their usage (a
 * changed window carries it over), new names start empty, the others are
 * forgotten.  Times are now_ms(). */
void budget_registry_sync(struct budget_registry *reg, const struct policy *p, int64_t now);

/* The program on the other end, looked up once and only when a budget with
 * `binary` needs it (lookup NULL, or returning NULL: not known). */
struct caller {
    const struct identity *(*lookup)(void *ctx);
    void *ctx;
    const struct identity *id;
    bool looked_up;
};
const struct identity *caller_identity(struct caller *c);

struct budget_refusal {
    char budget[64];
    const char *kind;       /* "tokens" or "requests" */
    unsigned retry_after_s; /* until the window frees enough: at least 1 */
};
/* Count one request in every budget of p that covers route r and counts
 * the caller, but for those already in *admitted (bits by budget index,
 * which it then gains); or, when one of them is spent, count nothing and
 * say why (the one that frees last).  true: admitted. */
bool budget_admit(struct budget_registry *reg, const struct policy *p, const struct route *r,
                  struct caller *who, int64_t now, uint64_t *admitted, struct budget_refusal *why);
/* A finished request's tokens (prompt plus completion, as reported) into
 * the budgets covering the route that answered it. */
void budget_charge(struct budget_registry *reg, const struct policy *p, const struct route *r,
                   struct caller *who, const struct usage *u, int64_t now);
/* What is left of each limit of p's budgets, for /metrics. */
struct budget_gauge {
    const char *budget, *kind; /* budget: p's, valid while p is */
    uint64_t remaining;
};
size_t budget_gauges(struct budget_registry *reg, const struct policy *p, int64_t now,
                     struct budget_gauge *out, size_t cap);

/* ---- backend.c ---- */

struct backend_pool;
/* Idle keep-alive connections to backends, at most max_idle of them. */
struct backend_pool *backend_pool_new(size_t max_idle);
void backend_pool_free(struct backend_pool *bp);

/* ---- serve.c ---- */

/* One inference request, as logged. */
struct inference_record {
    const char *route; /* the route that answered (or was tried last) */
    const char *protocol, *error;
    char model[256];
    char detail[320]; /* for the log only: may name what the client must not see */
    int status;
    unsigned attempts; /* calls made to backends */
    uint64_t bytes_up, bytes_down;
    long long duration_ms;
    struct usage usage;
};

/* One attempt at a backend, as it ended. */
struct attempt_record {
    const char *route, *protocol, *model;
    /* answered (a status below 500, not 429), 5xx, 429, connect, timeout,
     * malformed, cut (a buffered answer broke off), budget (a fallback not
     * tried: its budget is spent) */
    const char *result;
    const char *detail; /* for the log only; never a key */
    const char *next;   /* the route tried next; NULL when this was the last */
    int status;         /* the backend's, or -1 */
    unsigned attempt;   /* 1 for the first; 0 for a fallback not tried */
};

struct inference_env {
    const struct policy *pol;
    struct tls_client *tls; /* toward https:// backends; NULL when it could not load */
    struct backend_pool *pool;
    /* connect to a backend: a connected non-blocking fd, or -1 with err */
    int (*dial)(void *ctx, const char *host, uint16_t port, char *err, size_t errlen);
    void *dial_ctx;
    void (*log)(void *ctx, const struct inference_record *r);
    /* each attempt at a backend (with log_ctx); may be NULL */
    void (*attempt)(void *ctx, const struct attempt_record *a);
    void *log_ctx;
    struct budget_registry *budgets; /* NULL: no budget is counted */
    /* the program on the other end, for budgets with `binary`: looked up
     * on the first need (NULL, or returning NULL: not known) */
    const struct identity *(*caller)(void *ctx);
    void *caller_ctx;
    /* before each request after the first: may bring env up to date (a
     * reload); false ends the connection (no longer intercepted). May be NULL. */
    bool (*refresh)(void *ctx, struct inference_env *env);
    void *refresh_ctx;
    /* before a request is served: does a request rule (a deny rule with
     * methods or paths) deny it?  Then true, with the rule and what to show
     * (its message, or the reason) in the API's error shape.  May be NULL. */
    bool (*denied)(void *ctx, const char *method, const char *path, const char **rule,
                   const char **message);
    void *denied_ctx;
};

/* Serve the request whose head m was parsed from cl's buffer; true when the
 * connection may carry another. */
bool inference_serve_request(const struct inference_env *env, struct bufconn *cl,
                             const struct http_msg *m);
/* Read and serve requests until the client leaves, errs or idles out; the
 * first head must come within first_wait_ms. */
void inference_serve(const struct inference_env *env, struct bufconn *cl, int first_wait_ms);

#endif
