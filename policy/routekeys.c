/*
 * routekeys.c - the [route NAME] sections: where intercepted inference
 * requests go.
 *
 * Each section appends a route to the policy, in file order (the order they
 * are tried in).  The backend's key is read at load, from the environment
 * or a file, so that a missing key stops a load (or a reload) instead of
 * the first request; it is wiped when the policy is freed.  What a route
 * does not say (protocols, timeouts, retry_on) is filled in when the load
 * finishes, which is also when `fallback` is resolved: it may name a route
 * further down, and a chain of fallbacks that comes back to where it
 * started is refused, since it would send a request round for ever.
 */
#include "policy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum route_key {
    ROUTE_ENDPOINT,
    ROUTE_PROVIDER,
    ROUTE_PROTOCOLS,
    ROUTE_MODEL,
    ROUTE_MODELS,
    ROUTE_API_KEY_ENV,
    ROUTE_API_KEY_FILE,
    ROUTE_API_KEY_SECRET,
    ROUTE_TIMEOUT,
    ROUTE_STREAM_IDLE_TIMEOUT,
    ROUTE_MODEL_MAP,
    ROUTE_FALLBACK,
    ROUTE_RETRIES,
    ROUTE_RETRY_ON,
    ROUTE_KEYS
};

/* The route a section opened; never kept, as opening the next route moves it. */
static struct route *route_of(struct loader *L, const struct section *S)
{
    return &L->p->routes[S->index];
}

static void set_endpoint(struct loader *L, struct section *S, const struct key_def *k,
                         const char *v)
{
    const char *why;
    (void)k;
    if (parse_endpoint(v, route_of(L, S), &why) != 0)
        line_problem(L, "endpoint '%s': %s", v, why);
}

static void set_protocols(struct loader *L, struct section *S, const struct key_def *k,
                          const char *v)
{
    char err[400];
    (void)k;
    if (parse_protocols(v, &route_of(L, S)->protocols, err, sizeof(err)) != 0)
        line_problem(L, "%s", err);
}

/* Model names are spliced into JSON bodies as they are: no quote may end
 * one early, no backslash start an escape. */
static bool model_name_ok(const char *s)
{
    return *s != '\0' && strlen(s) < ROUTE_MODEL_MAX && strpbrk(s, "\"\\") == NULL;
}

static void set_model(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    struct route *r = route_of(L, S);
    (void)k;
    if (!model_name_ok(v))
        line_problem(L, "model: '%s' is too long or has quotes or backslashes", v);
    else
        snprintf(r->model, sizeof(r->model), "%s", v);
}

struct route_ctx {
    struct loader *L;
    struct route *r;
};

static int add_model_glob(void *vctx, const char *item)
{
    struct route_ctx *c = vctx;
    char **grown = realloc(c->r->models, (c->r->n_models + 1) * sizeof(*grown));
    if (grown == NULL) {
        line_problem(c->L, "models: out of memory");
        return -1;
    }
    c->r->models = grown; /* the old array is gone: never keep its pointer */
    if ((grown[c->r->n_models] = strdup(item)) == NULL) {
        line_problem(c->L, "models: out of memory");
        return -1;
    }
    c->r->n_models++;
    return 0;
}

static void set_models(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    struct route_ctx c = {L, route_of(L, S)};
    key_list(L, k, v, add_model_glob, &c);
}

/* One key per route, whichever key says where it is. */
static bool key_free(struct loader *L, const struct route *r)
{
    if (r->api_key == NULL && r->api_key_secret[0] == '\0')
        return true;
    line_problem(L, "give one of api_key_env, api_key_file and api_key_secret");
    return false;
}

static void set_api_key_env(struct loader *L, struct section *S, const struct key_def *k,
                            const char *var)
{
    struct route *r = route_of(L, S);
    char err[256];
    (void)k;
    if (key_free(L, r) && (r->api_key = credential_from_env(var, err, sizeof(err))) == NULL)
        line_problem(L, "api_key_env: %s", err);
}

static void set_api_key_file(struct loader *L, struct section *S, const struct key_def *k,
                             const char *path)
{
    struct route *r = route_of(L, S);
    char err[256];
    (void)k;
    if (key_free(L, r) && (r->api_key = credential_from_file(path, err, sizeof(err))) == NULL)
        line_problem(L, "api_key_file: %s", err);
}

/* Resolved when the route is finished: secrets may come later in the file. */
static void set_api_key_secret(struct loader *L, struct section *S, const struct key_def *k,
                               const char *name)
{
    struct route *r = route_of(L, S);
    (void)k;
    if (key_free(L, r))
        snprintf(r->api_key_secret, sizeof(r->api_key_secret), "%s", name);
}

static void set_timeout(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    struct route *r = route_of(L, S);
    (void)k;
    if (parse_duration_ms(v, &r->timeout_ms) != 0 || r->timeout_ms == 0)
        line_problem(L, "timeout: '%s' is not a duration above zero up to 24h", v);
}

static char *trimmed_copy(const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return strndup(s, n);
}

/* One "requested=backend" pair; the requested side may be a glob. */
static int add_alias(void *vctx, const char *item)
{
    struct route_ctx *c = vctx;
    struct route *r = c->r;
    const char *eq = strchr(item, '=');
    if (eq == NULL || strchr(eq + 1, '=') != NULL) {
        line_problem(c->L, "model_map: '%s' is not REQUESTED=MODEL", item);
        return -1;
    }
    if (r->n_model_map == ROUTE_ALIASES_MAX) {
        line_problem(c->L, "model_map: more than %d aliases", ROUTE_ALIASES_MAX);
        return -1;
    }
    char *from = trimmed_copy(item, (size_t)(eq - item)),
         *to = trimmed_copy(eq + 1, strlen(eq + 1));
    struct model_alias *grown = realloc(r->model_map, (r->n_model_map + 1) * sizeof(*grown));
    if (from == NULL || to == NULL || grown == NULL) {
        line_problem(c->L, "model_map: out of memory");
    } else if (!model_name_ok(from) || !model_name_ok(to)) {
        r->model_map = grown;
        line_problem(c->L,
                     "model_map: '%s' needs a name on each side of '=', under %d bytes, without "
                     "quotes or backslashes",
                     item, ROUTE_MODEL_MAX);
    } else {
        r->model_map = grown;
        r->model_map[r->n_model_map++] = (struct model_alias){from, to};
        return 0;
    }
    free(from);
    free(to);
    return -1;
}

static void set_model_map(struct loader *L, struct section *S, const struct key_def *k,
                          const char *v)
{
    struct route_ctx c = {L, route_of(L, S)};
    key_list(L, k, v, add_alias, &c);
}

static void set_fallback(struct loader *L, struct section *S, const struct key_def *k,
                         const char *v)
{
    struct route *r = route_of(L, S);
    (void)k;
    if (strlen(v) >= sizeof(r->fallback_name) || strchr(v, ',') != NULL)
        line_problem(L, "fallback: '%s' is not one route name", v);
    else
        snprintf(r->fallback_name, sizeof(r->fallback_name), "%s", v);
}

static int add_retry_class(void *vctx, const char *item)
{
    static const struct {
        const char *name;
        unsigned bit;
    } classes[] = {{"connect", RETRY_ON_CONNECT}, {"5xx", RETRY_ON_5XX}, {"429", RETRY_ON_429}};
    struct route_ctx *c = vctx;
    for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
        if (strcmp(item, classes[i].name) == 0) {
            c->r->retry_on |= classes[i].bit;
            return 0;
        }
    }
    line_problem(c->L, "retry_on: '%s' is not connect, 5xx or 429", item);
    return -1;
}

static void set_retry_on(struct loader *L, struct section *S, const struct key_def *k,
                         const char *v)
{
    struct route_ctx c = {L, route_of(L, S)};
    key_list(L, k, v, add_retry_class, &c);
}

static const char *const providers[] = {
    [PROVIDER_OPENAI] = "openai",
    [PROVIDER_ANTHROPIC] = "anthropic",
    [PROVIDER_NVIDIA] = "nvidia",
    NULL,
};
_Static_assert(sizeof(enum provider) == sizeof(int), "V_CHOICE writes an int");

static const struct key_def route_keys[ROUTE_KEYS] = {
    [ROUTE_ENDPOINT] = {.name = "endpoint", .type = V_CUSTOM, .parse = set_endpoint},
    [ROUTE_PROVIDER] = {.name = "provider",
                        .type = V_CHOICE,
                        .off = offsetof(struct route, provider),
                        .choices = providers},
    [ROUTE_PROTOCOLS] = {.name = "protocols", .type = V_CUSTOM, .parse = set_protocols},
    [ROUTE_MODEL] = {.name = "model", .type = V_CUSTOM, .parse = set_model},
    [ROUTE_MODELS] = {.name = "models", .type = V_CUSTOM, .parse = set_models},
    [ROUTE_API_KEY_ENV] = {.name = "api_key_env", .type = V_CUSTOM, .parse = set_api_key_env},
    [ROUTE_API_KEY_FILE] = {.name = "api_key_file", .type = V_CUSTOM, .parse = set_api_key_file},
    [ROUTE_API_KEY_SECRET] = {.name = "api_key_secret",
                              .type = V_CUSTOM,
                              .parse = set_api_key_secret},
    [ROUTE_TIMEOUT] = {.name = "timeout", .type = V_CUSTOM, .parse = set_timeout},
    [ROUTE_STREAM_IDLE_TIMEOUT] = {.name = "stream_idle_timeout",
                                   .type = V_DURATION,
                                   .off = offsetof(struct route, stream_idle_timeout_ms),
                                   .min = 1},
    [ROUTE_MODEL_MAP] = {.name = "model_map",
                         .type = V_CUSTOM,
                         .parse = set_model_map,
                         .flags = KEY_LIST},
    [ROUTE_FALLBACK] = {.name = "fallback", .type = V_CUSTOM, .parse = set_fallback},
    [ROUTE_RETRIES] = {.name = "retries",
                       .type = V_UINT,
                       .off = offsetof(struct route, retries),
                       .min = 0,
                       .max = ROUTE_RETRIES_MAX},
    [ROUTE_RETRY_ON] = {.name = "retry_on",
                        .type = V_CUSTOM,
                        .parse = set_retry_on,
                        .flags = KEY_LIST},
};
_Static_assert(ROUTE_KEYS <= SECTION_KEYS_MAX, "a section's keys fit its line_of");

static bool open_route(struct loader *L, struct section *S)
{
    struct policy *p = L->p;
    struct route *grown =
        section_grow(L, S, p->routes, &p->n_routes, POLICY_ROUTES_MAX, sizeof(*grown), "routes");
    if (grown == NULL)
        return false;
    p->routes = grown;
    struct route *r = &grown[S->index];
    snprintf(r->name, sizeof(r->name), "%s", S->name);
    r->line = S->line;
    r->index = (unsigned)S->index;
    r->fallback = -1;
    S->obj = r;
    return true;
}

const struct route *route_named(const struct policy *p, const char *name)
{
    for (size_t i = 0; i < p->n_routes; i++)
        if (strcmp(p->routes[i].name, name) == 0)
            return &p->routes[i];
    return NULL;
}

/* Follow the fallback names from r: a cycle through r is reported once, by
 * the first route of the cycle in the file (the others stay quiet). */
static void check_fallback_cycle(struct loader *L, const struct section *S, const struct route *r)
{
    char chain[512] = "";
    const struct route *cur = r;
    text_append(chain, sizeof(chain), "%s", r->name);
    for (size_t steps = 0; steps <= L->p->n_routes; steps++) {
        cur = cur->fallback_name[0] ? route_named(L->p, cur->fallback_name) : NULL;
        if (cur == NULL || cur->index < r->index)
            return; /* the chain ends, or a cycle here is an earlier route's to report */
        text_append(chain, sizeof(chain), " -> %s", cur->name);
        if (cur == r) {
            load_problem(L, S->line_of[ROUTE_FALLBACK], "fallback: a cycle (%s)", chain);
            return;
        }
    }
}

static void resolve_fallback(struct loader *L, const struct section *S, struct route *r)
{
    if (r->fallback_name[0] == '\0')
        return;
    const struct route *f = route_named(L->p, r->fallback_name);
    if (f == NULL) {
        load_problem(L, S->line_of[ROUTE_FALLBACK], "fallback: no route named '%s'",
                     r->fallback_name);
        return;
    }
    r->fallback = (int)f->index;
    check_fallback_cycle(L, S, r);
}

static void finish_route(struct loader *L, struct section *S)
{
    static const unsigned openai_protocols =
        1u << PROTO_OPENAI_CHAT | 1u << PROTO_OPENAI_COMPLETIONS | 1u << PROTO_OPENAI_RESPONSES |
        1u << PROTO_OPENAI_EMBEDDINGS | 1u << PROTO_MODEL_DISCOVERY;
    struct route *r = route_of(L, S);
    if (S->line_of[ROUTE_ENDPOINT] == 0) /* said badly is reported already */
        load_problem(L, r->line, "route '%s' has no endpoint", r->name);
    if (r->protocols == 0) /* what the provider's API speaks */
        r->protocols = r->provider == PROVIDER_ANTHROPIC
                           ? 1u << PROTO_ANTHROPIC_MESSAGES | 1u << PROTO_MODEL_DISCOVERY
                           : openai_protocols;
    if (r->timeout_ms == 0)
        r->timeout_ms = L->p->inference.timeout_ms;
    if (r->stream_idle_timeout_ms == 0)
        r->stream_idle_timeout_ms = L->p->inference.stream_idle_timeout_ms;
    if (S->line_of[ROUTE_RETRY_ON] == 0)
        r->retry_on = RETRY_ON_CONNECT | RETRY_ON_5XX;
    resolve_fallback(L, S, r);
    if (r->api_key_secret[0] != '\0') {
        const struct secret *sec = secret_find(L->p, r->api_key_secret);
        if (sec == NULL)
            load_problem(L, S->line_of[ROUTE_API_KEY_SECRET], "api_key_secret: no [secret %s]",
                         r->api_key_secret);
        else if ((r->api_key = strdup(sec->value)) == NULL)
            load_problem(L, r->line, "out of memory");
    }
}

const struct section_kind route_section = {
    .name = "route",
    .named = true,
    .noun = "route",
    .keys = route_keys,
    .n_keys = ROUTE_KEYS,
    .stage = FINISH_ROUTES,
    .open = open_route,
    .finish = finish_route,
};

void route_free(struct route *r)
{
    for (size_t j = 0; j < r->n_models; j++)
        free(r->models[j]);
    free(r->models);
    for (size_t j = 0; j < r->n_model_map; j++) {
        free(r->model_map[j].from);
        free(r->model_map[j].to);
    }
    free(r->model_map);
    credential_free(r->api_key);
}
