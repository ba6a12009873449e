/*
 * budgetkeys.c - the [budget NAME] sections: how many tokens and requests
 * the routes a budget names may serve per window, optionally only for
 * some calling programs.
 *
 * Each section appends a budget to the policy.  Its `routes` may name
 * routes anywhere in the file, so the names are kept as written and
 * resolved when the load finishes (budgets finish after routes); `*` is
 * every route.  Only the limits live here: what has been used is the
 * daemon's (inference/budget.c), kept by name across reloads.
 */
#include "policy_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUDGET_COUNT_MAX  1000000000000000ull /* 10^15: far beyond any month of tokens */
#define BUDGET_WINDOW_MIN 1000                /* ms: finer than a second is not a budget */

enum budget_key {
    BUDGET_ROUTES,
    BUDGET_BINARY,
    BUDGET_TOKENS,
    BUDGET_REQUESTS,
    BUDGET_WINDOW,
    BUDGET_WINDOW_TYPE,
    BUDGET_KEYS
};

/* The budget a section opened; never kept, as opening the next one moves it. */
static struct budget *budget_of(struct loader *L, const struct section *S)
{
    return &L->p->budgets[S->index];
}

struct budget_ctx {
    struct loader *L;
    struct budget *b;
};

static int add_route_name(void *vctx, const char *item)
{
    struct budget_ctx *c = vctx;
    struct budget *b = c->b;
    if (strcmp(item, "*") == 0) {
        b->all_routes = true;
        return 0;
    }
    char **grown = realloc(b->route_names, (b->n_route_names + 1) * sizeof(*grown));
    if (grown == NULL || (grown[b->n_route_names] = strdup(item)) == NULL) {
        if (grown != NULL)
            b->route_names = grown;
        line_problem(c->L, "out of memory");
        return -1;
    }
    b->route_names = grown;
    b->n_route_names++;
    return 0;
}

static void set_routes(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    struct budget_ctx c = {L, budget_of(L, S)};
    key_list(L, k, v, add_route_name, &c);
    if (c.b->all_routes && c.b->n_route_names > 0)
        line_problem(L, "routes: '*' is every route; name no others beside it");
}

static int add_budget_binary(void *vctx, const char *item)
{
    struct budget_ctx *c = vctx;
    return binary_list_add(c->L, &c->b->binaries, &c->b->n_binaries, item);
}

static void set_binary(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    struct budget_ctx c = {L, budget_of(L, S)};
    key_list(L, k, v, add_budget_binary, &c);
}

/* tokens and requests: a whole number above zero. */
static void set_count(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    char *field = (char *)budget_of(L, S) + k->off, *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (!isdigit((unsigned char)v[0]) || *end != '\0' || errno != 0 || n == 0 ||
        n > BUDGET_COUNT_MAX)
        line_problem(L, "%s: '%s' is not a whole number above zero", k->name, v);
    else
        *(uint64_t *)field = n;
}

static void set_window(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    struct budget *b = budget_of(L, S);
    (void)k;
    if (parse_duration_ms(v, &b->window_ms) != 0 || b->window_ms < BUDGET_WINDOW_MIN)
        line_problem(L, "window: '%s' is not a duration from 1s to 24h (like 1h, 24h)", v);
}

static const char *const window_types[] = {
    [WINDOW_SLIDING] = "sliding",
    [WINDOW_FIXED] = "fixed",
    NULL,
};
_Static_assert(sizeof(enum budget_window) == sizeof(int), "V_CHOICE writes an int");

#define B(field) offsetof(struct budget, field)
static const struct key_def budget_keys[BUDGET_KEYS] = {
    [BUDGET_ROUTES] = {.name = "routes", .type = V_CUSTOM, .parse = set_routes, .flags = KEY_LIST},
    [BUDGET_BINARY] = {.name = "binary", .type = V_CUSTOM, .parse = set_binary, .flags = KEY_LIST},
    [BUDGET_TOKENS] = {.name = "tokens", .type = V_CUSTOM, .off = B(tokens), .parse = set_count},
    [BUDGET_REQUESTS] = {.name = "requests",
                         .type = V_CUSTOM,
                         .off = B(requests),
                         .parse = set_count},
    [BUDGET_WINDOW] = {.name = "window", .type = V_CUSTOM, .parse = set_window},
    [BUDGET_WINDOW_TYPE] = {.name = "window_type",
                            .type = V_CHOICE,
                            .off = B(window_type),
                            .choices = window_types},
};
#undef B
_Static_assert(BUDGET_KEYS <= SECTION_KEYS_MAX, "a section's keys fit its line_of");

static bool open_budget(struct loader *L, struct section *S)
{
    struct policy *p = L->p;
    struct budget *grown = section_grow(L, S, p->budgets, &p->n_budgets, POLICY_BUDGETS_MAX,
                                        sizeof(*grown), "budgets");
    if (grown == NULL)
        return false;
    p->budgets = grown;
    struct budget *b = &grown[S->index];
    snprintf(b->name, sizeof(b->name), "%s", S->name);
    b->line = S->line;
    S->obj = b;
    return true;
}

static void resolve_routes(struct loader *L, const struct section *S, struct budget *b)
{
    for (size_t i = 0; i < b->n_route_names; i++) {
        const struct route *r = route_named(L->p, b->route_names[i]);
        if (r == NULL)
            load_problem(L, S->line_of[BUDGET_ROUTES], "routes: no route named '%s'",
                         b->route_names[i]);
        else
            b->route_bits[r->index / 64] |= 1ull << (r->index % 64);
    }
}

static void finish_budget(struct loader *L, struct section *S)
{
    struct budget *b = budget_of(L, S);
    if (S->line_of[BUDGET_ROUTES] == 0)
        load_problem(L, b->line, "budget '%s' has no routes (a list of routes, or *)", b->name);
    if (S->line_of[BUDGET_WINDOW] == 0)
        load_problem(L, b->line, "budget '%s' has no window (like 1h, 24h)", b->name);
    if (S->line_of[BUDGET_TOKENS] == 0 && S->line_of[BUDGET_REQUESTS] == 0)
        load_problem(L, b->line, "budget '%s' limits nothing: give tokens, requests or both",
                     b->name);
    resolve_routes(L, S, b);
}

const struct section_kind budget_section = {
    .name = "budget",
    .named = true,
    .noun = "budget",
    .keys = budget_keys,
    .n_keys = BUDGET_KEYS,
    .stage = FINISH_BUDGETS,
    .open = open_budget,
    .finish = finish_budget,
};

bool budget_covers_route(const struct budget *b, const struct route *r)
{
    return b->all_routes || (b->route_bits[r->index / 64] >> (r->index % 64) & 1u) != 0;
}

void budget_free(struct budget *b)
{
    for (size_t i = 0; i < b->n_route_names; i++)
        free(b->route_names[i]);
    free(b->route_names);
    for (size_t i = 0; i < b->n_binaries; i++)
        free(b->binaries[i]);
    free(b->binaries);
}
