/*
 * budget.c - what the [budget NAME] sections have used, and whether the
 * next request may still go.
 *
 * The usage cannot live in the policy, which a reload replaces whole, so it
 * lives here, in a registry the daemon makes once and hands to every
 * connection: at most POLICY_BUDGETS_MAX budgets, found by name, so that a
 * budget a reload keeps keeps what it used.  One mutex guards it; it is
 * held for a few additions, never for I/O or for an identity lookup.
 *
 * A window is cut in slots: 60 for a sliding window (the count is that of
 * the last 60 slots, so usage stops counting between window - window/60
 * and window after it happened), 1 for a fixed one (the count starts again
 * at each window's end).  Windows follow each other from the moment the
 * budget was first loaded, on the monotonic clock.  A slot remembers which
 * one it is, so a slot not written for a whole window reads as empty
 * without anybody clearing it.
 *
 * A request is counted when it is admitted; its tokens (prompt plus
 * completion, as the backend reported them) when it ends, so a request in
 * flight always finishes and the one after it is refused.
 */
#include "inference.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS_SLIDING 60

struct slot {
    int64_t k; /* which slot since t0 */
    uint64_t tokens, requests;
};

struct budget_state {
    bool used;
    char name[64];
    unsigned window_ms;
    enum budget_window type;
    int64_t t0;   /* monotonic ms: slot 0 starts here */
    int64_t span; /* one slot, ms */
    unsigned n;   /* slots in a window */
    struct slot slots[SLOTS_SLIDING];
};

struct budget_registry {
    pthread_mutex_t mu;
    struct budget_state st[POLICY_BUDGETS_MAX];
};

struct budget_registry *budget_registry_new(void)
{
    struct budget_registry *reg = calloc(1, sizeof(*reg));
    if (reg != NULL && pthread_mutex_init(&reg->mu, NULL) != 0) {
        free(reg);
        return NULL;
    }
    return reg;
}

void budget_registry_free(struct budget_registry *reg)
{
    if (reg == NULL)
        return;
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

static int64_t slot_now(const struct budget_state *s, int64_t now)
{
    return now > s->t0 ? (now - s->t0) / s->span : 0; /* a time read before the budget was made */
}

/* What the window ending now holds. */
static void window_sum(const struct budget_state *s, int64_t now, uint64_t *tokens,
                       uint64_t *requests)
{
    int64_t k = slot_now(s, now);
    *tokens = *requests = 0;
    for (unsigned i = 0; i < s->n; i++) {
        const struct slot *sl = &s->slots[i];
        if (sl->k > k - (int64_t)s->n && sl->k <= k) {
            *tokens += sl->tokens;
            *requests += sl->requests;
        }
    }
}

/* The slot now falls in, emptied when it last held an older one. */
static struct slot *slot_current(struct budget_state *s, int64_t now)
{
    int64_t k = slot_now(s, now);
    struct slot *sl = &s->slots[k % s->n];
    if (sl->k != k)
        *sl = (struct slot){.k = k};
    return sl;
}

static void set_layout(struct budget_state *s, const struct budget *b)
{
    s->window_ms = b->window_ms;
    s->type = b->window_type;
    s->n = b->window_type == WINDOW_FIXED ? 1 : SLOTS_SLIDING;
    s->span = b->window_ms / s->n > 0 ? b->window_ms / s->n : 1;
    for (unsigned i = 0; i < SLOTS_SLIDING; i++)
        s->slots[i] = (struct slot){.k = -1};
}

/* A kept budget whose window changed: what it used so far stays counted,
 * as one lump in the current slot of the new layout. */
static void relayout(struct budget_state *s, const struct budget *b, int64_t now)
{
    uint64_t tokens, requests;
    if (s->window_ms == b->window_ms && s->type == b->window_type)
        return;
    window_sum(s, now, &tokens, &requests);
    set_layout(s, b);
    struct slot *sl = slot_current(s, now);
    sl->tokens = tokens;
    sl->requests = requests;
}

static struct budget_state *state_named(struct budget_registry *reg, const char *name)
{
    for (size_t i = 0; i < POLICY_BUDGETS_MAX; i++)
        if (reg->st[i].used && strcmp(reg->st[i].name, name) == 0)
            return &reg->st[i];
    return NULL;
}

static bool policy_names(const struct policy *p, const char *name)
{
    for (size_t i = 0; i < policy_budget_count(p); i++)
        if (strcmp(policy_budget(p, i)->name, name) == 0)
            return true;
    return false;
}

void budget_registry_sync(struct budget_registry *reg, const struct policy *p, int64_t now)
{
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < POLICY_BUDGETS_MAX; i++) /* gone from the file: forgotten */
        if (reg->st[i].used && !policy_names(p, reg->st[i].name))
            reg->st[i].used = false;
    for (size_t i = 0; i < policy_budget_count(p); i++) {
        const struct budget *b = policy_budget(p, i);
        struct budget_state *s = state_named(reg, b->name);
        if (s != NULL) {
            relayout(s, b, now);
            continue;
        }
        for (size_t j = 0; j < POLICY_BUDGETS_MAX && s == NULL; j++)
            if (!reg->st[j].used)
                s = &reg->st[j]; /* always one: the policy has at most as many */
        *s = (struct budget_state){.used = true, .t0 = now};
        snprintf(s->name, sizeof(s->name), "%s", b->name);
        set_layout(s, b);
    }
    pthread_mutex_unlock(&reg->mu);
}

/* ---- one request's budgets ------------------------------------------------ */

const struct identity *caller_identity(struct caller *c)
{
    if (!c->looked_up && c->lookup != NULL)
        c->id = c->lookup(c->ctx);
    c->looked_up = true;
    return c->id;
}

/* The budgets (bits by policy index) that count a request of this caller
 * on route r; the caller is looked up only when one names binaries. */
static uint64_t budgets_for(const struct policy *p, const struct route *r, struct caller *who)
{
    uint64_t set = 0;
    for (size_t i = 0; i < policy_budget_count(p); i++) {
        const struct budget *b = policy_budget(p, i);
        if (!budget_covers_route(b, r))
            continue;
        if (b->n_binaries == 0 || budget_counts_caller(b, caller_identity(who)))
            set |= 1ull << i;
    }
    return set;
}

/* When enough of what s used has left the window for used to fall below
 * limit (one of its fields, by offset). */
static int64_t frees_at(const struct budget_state *s, int64_t now, uint64_t used, uint64_t limit,
                        size_t field)
{
    int64_t k = slot_now(s, now);
    for (int64_t old = k - (int64_t)s->n + 1; old <= k; old++) {
        const struct slot *sl = old >= 0 ? &s->slots[old % s->n] : NULL;
        if (sl != NULL && sl->k == old)
            used -= *(const uint64_t *)((const char *)sl + field);
        if (used < limit)
            return s->t0 + (old + (int64_t)s->n) * s->span;
    }
    return s->t0 + (k + (int64_t)s->n) * s->span;
}

/* Is b spent?  If so, *why says which limit and in how many seconds (at
 * least one) the window frees enough of it. */
static bool spent(const struct budget *b, const struct budget_state *s, int64_t now,
                  struct budget_refusal *why)
{
    uint64_t tokens, requests;
    window_sum(s, now, &tokens, &requests);
    bool by_tokens = b->tokens > 0 && tokens >= b->tokens;
    bool by_requests = b->requests > 0 && requests >= b->requests;
    if (!by_tokens && !by_requests)
        return false;
    int64_t at = 0;
    if (by_tokens)
        at = frees_at(s, now, tokens, b->tokens, offsetof(struct slot, tokens));
    if (by_requests) {
        int64_t r = frees_at(s, now, requests, b->requests, offsetof(struct slot, requests));
        at = r > at ? r : at;
    }
    unsigned secs = (unsigned)((at - now + 999) / 1000);
    if (secs > why->retry_after_s || why->budget[0] == '\0') {
        snprintf(why->budget, sizeof(why->budget), "%s", b->name);
        why->kind = by_tokens ? "tokens" : "requests";
        why->retry_after_s = secs > 0 ? secs : 1;
    }
    return true;
}

bool budget_admit(struct budget_registry *reg, const struct policy *p, const struct route *r,
                  struct caller *who, int64_t now, uint64_t *admitted, struct budget_refusal *why)
{
    uint64_t set = budgets_for(p, r, who) & ~*admitted;
    struct budget_state *st[POLICY_BUDGETS_MAX];
    bool refused = false;
    *why = (struct budget_refusal){.kind = NULL};
    if (set == 0 || reg == NULL)
        return true;
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < policy_budget_count(p); i++) {
        st[i] = set >> i & 1u ? state_named(reg, policy_budget(p, i)->name) : NULL;
        if (st[i] != NULL && spent(policy_budget(p, i), st[i], now, why))
            refused = true; /* every spent one is looked at: the latest to free decides */
    }
    for (size_t i = 0; i < policy_budget_count(p) && !refused; i++)
        if (st[i] != NULL)
            slot_current(st[i], now)->requests++;
    pthread_mutex_unlock(&reg->mu);
    if (!refused)
        *admitted |= set;
    return !refused;
}

void budget_charge(struct budget_registry *reg, const struct policy *p, const struct route *r,
                   struct caller *who, const struct usage *u, int64_t now)
{
    uint64_t tokens = (uint64_t)(u->in > 0 ? u->in : 0) + (uint64_t)(u->out > 0 ? u->out : 0);
    uint64_t set = tokens > 0 && reg != NULL ? budgets_for(p, r, who) : 0;
    if (set == 0)
        return;
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < policy_budget_count(p); i++) {
        struct budget_state *s = set >> i & 1u ? state_named(reg, policy_budget(p, i)->name) : NULL;
        if (s != NULL)
            slot_current(s, now)->tokens += tokens;
    }
    pthread_mutex_unlock(&reg->mu);
}

size_t budget_gauges(struct budget_registry *reg, const struct policy *p, int64_t now,
                     struct budget_gauge *out, size_t cap)
{
    size_t n = 0;
    if (reg == NULL)
        return 0;
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < policy_budget_count(p); i++) {
        const struct budget *b = policy_budget(p, i);
        const struct budget_state *s = state_named(reg, b->name);
        uint64_t tokens, requests;
        if (s == NULL)
            continue;
        window_sum(s, now, &tokens, &requests);
        if (b->tokens > 0 && n < cap)
            out[n++] = (struct budget_gauge){b->name, "tokens",
                                             b->tokens > tokens ? b->tokens - tokens : 0};
        if (b->requests > 0 && n < cap)
            out[n++] = (struct budget_gauge){b->name, "requests",
                                             b->requests > requests ? b->requests - requests : 0};
    }
    pthread_mutex_unlock(&reg->mu);
    return n;
}
