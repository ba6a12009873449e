/*
 * routekeys.c - the [route NAME] sections: where intercepted inference
 * requests go.
 *
 * Each section appends a route to the policy, in file order (the order they
 * are tried in).  The backend's key is read at load, from the environment
 * or a file, so that a missing key stops a load (or a reload) instead of
 * the first request; it is wiped when the policy is freed.  What a route
 * does not say (protocols, timeout) is filled in when the load finishes.
 */
#include "policy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 256

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

/* The model is spliced into JSON bodies as it is: no quote may end it early. */
static void set_model(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    struct route *r = route_of(L, S);
    (void)k;
    if (strlen(v) >= sizeof(r->model) || strpbrk(v, "\"\\") != NULL)
        line_problem(L, "model: '%s' is too long or has quotes or backslashes", v);
    else
        snprintf(r->model, sizeof(r->model), "%s", v);
}

struct models_ctx {
    struct loader *L;
    struct route *r;
};

static int add_model_glob(void *vctx, const char *item)
{
    struct models_ctx *c = vctx;
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
    struct models_ctx c = {L, route_of(L, S)};
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
        line_problem(L, "timeout: '%s' is not a duration above zero", v);
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
};
_Static_assert(ROUTE_KEYS <= SECTION_KEYS_MAX, "a section's keys fit its line_of");

static bool open_route(struct loader *L, struct section *S)
{
    struct policy *p = L->p;
    if (p->n_routes >= MAX_ROUTES) {
        line_problem(L, "too many routes (at most %d)", MAX_ROUTES);
        return false;
    }
    struct route *grown = array_grow(p->routes, p->n_routes, sizeof(*grown));
    if (grown == NULL) {
        line_problem(L, "out of memory");
        return false;
    }
    p->routes = grown;
    S->index = p->n_routes++;
    struct route *r = &grown[S->index];
    snprintf(r->name, sizeof(r->name), "%s", S->name);
    r->line = S->line;
    S->obj = r;
    return true;
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
        r->timeout_ms = 60000;
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
    credential_free(r->api_key);
}
