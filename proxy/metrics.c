/*
 * metrics.c - counters for the admin endpoint, in Prometheus text format.
 *
 * Plain atomic counters, bumped where things happen (the one kind of
 * mutable global egressd allows itself); inference requests, tokens and
 * attempts are counted by route (and status or result) in small tables
 * under a mutex, since their labels are only known at run time: a full
 * table leaves new labels uncounted rather than growing.  Gauges (queue,
 * workers, certificate cache, what budgets have left) are read from their
 * owners when /metrics is asked for.
 */
#include "proxy.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define LABEL_ROWS_MAX 256

static const char *const error_kinds[] = {"dns_failure", "upstream_unreachable", "upstream_timeout",
                                          "ssrf_denied", "upstream_unavailable", "upstream_error"};
#define N_ERROR_KINDS (sizeof(error_kinds) / sizeof(error_kinds[0]))

static struct {
    atomic_ullong connections[ACTION_COUNT]; /* by enum policy_action */
    atomic_ullong requests[3];               /* inspected: allow, deny, audit */
    atomic_llong tunnels_active;
    atomic_ullong bytes_up, bytes_down;
    atomic_ullong upstream_errors[N_ERROR_KINDS];
    atomic_ullong reloads_ok, reloads_failed;
    atomic_ullong refused[REFUSED_N];
    atomic_ullong denials[DENIAL_STAGES];
    atomic_ullong access_requests;
} counters;

/* Counters by a name (a route, a secret) and one more label, known only
 * at run time. */
struct label_table {
    pthread_mutex_t mu;
    size_t n;
    struct {
        char name[64], label[16];
        unsigned long long count[2];
    } rows[LABEL_ROWS_MAX];
};

static struct label_table by_status = {.mu = PTHREAD_MUTEX_INITIALIZER},
                          by_tokens = {.mu = PTHREAD_MUTEX_INITIALIZER},
                          by_attempt = {.mu = PTHREAD_MUTEX_INITIALIZER},
                          by_secret = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void label_add(struct label_table *t, const char *name, const char *label,
                      unsigned long long a, unsigned long long b)
{
    name = name ? name : "none";
    pthread_mutex_lock(&t->mu);
    size_t i = 0;
    while (i < t->n && (strcmp(t->rows[i].label, label) != 0 || strcmp(t->rows[i].name, name) != 0))
        i++;
    if (i == t->n && t->n < LABEL_ROWS_MAX) { /* full: the rest go uncounted */
        snprintf(t->rows[i].name, sizeof(t->rows[i].name), "%s", name);
        snprintf(t->rows[i].label, sizeof(t->rows[i].label), "%s", label);
        t->rows[i].count[0] = t->rows[i].count[1] = 0;
        t->n++;
    }
    if (i < t->n) {
        t->rows[i].count[0] += a;
        t->rows[i].count[1] += b;
    }
    pthread_mutex_unlock(&t->mu);
}

void metrics_connection(enum policy_action a)
{
    atomic_fetch_add_explicit(&counters.connections[a], 1, memory_order_relaxed);
}

void metrics_tunnel(int delta)
{
    atomic_fetch_add_explicit(&counters.tunnels_active, delta, memory_order_relaxed);
}

void metrics_bytes(uint64_t up, uint64_t down)
{
    atomic_fetch_add_explicit(&counters.bytes_up, up, memory_order_relaxed);
    atomic_fetch_add_explicit(&counters.bytes_down, down, memory_order_relaxed);
}

void metrics_request(const struct policy_decision *d)
{
    int i = d->audit ? 2 : d->action == ACTION_DENY ? 1 : 0;
    atomic_fetch_add_explicit(&counters.requests[i], 1, memory_order_relaxed);
}

/* Here, below the record: the metric's labels are these names. */
const char *denial_stage_name(enum denial_stage s)
{
    static const char *const names[DENIAL_STAGES] = {
        [DENIAL_CONNECT] = "connect",
        [DENIAL_SSRF] = "ssrf",
        [DENIAL_REQUEST] = "request",
        [DENIAL_SECRET] = "secret",
    };
    return s < DENIAL_STAGES ? names[s] : "connect";
}

void metrics_denial(enum denial_stage stage)
{
    atomic_fetch_add_explicit(&counters.denials[stage], 1, memory_order_relaxed);
}

void metrics_access_request(void)
{
    atomic_fetch_add_explicit(&counters.access_requests, 1, memory_order_relaxed);
}

void metrics_upstream_error(const char *code)
{
    for (size_t i = 0; i < N_ERROR_KINDS; i++)
        if (strcmp(code, error_kinds[i]) == 0)
            atomic_fetch_add_explicit(&counters.upstream_errors[i], 1, memory_order_relaxed);
}

void metrics_reload(bool ok)
{
    atomic_fetch_add(ok ? &counters.reloads_ok : &counters.reloads_failed, 1);
}

void metrics_refused(enum refused why)
{
    atomic_fetch_add_explicit(&counters.refused[why], 1, memory_order_relaxed);
}

void metrics_inference(const char *route, int status)
{
    char label[16];
    snprintf(label, sizeof(label), "%d", status);
    label_add(&by_status, route, label, 1, 0);
}

void metrics_tokens(const char *route, long long in, long long out)
{
    if (in > 0 || out > 0)
        label_add(&by_tokens, route, "", in > 0 ? (unsigned long long)in : 0,
                  out > 0 ? (unsigned long long)out : 0);
}

void metrics_attempt(const char *route, const char *result)
{
    label_add(&by_attempt, route, result, 1, 0);
}

void metrics_secret(const char *secret, const char *result)
{
    label_add(&by_secret, secret, result, 1, 0);
}

struct out {
    char *buf;
    size_t cap, n;
};

static void emit(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = o->n < o->cap ? vsnprintf(o->buf + o->n, o->cap - o->n, fmt, ap) : 0;
    va_end(ap);
    if (w > 0)
        o->n = o->n + (size_t)w < o->cap ? o->n + (size_t)w : o->cap;
}

static void counter(struct out *o, const char *name, const char *help)
{
    emit(o, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
}

/* A counter with a row per name and label of t: metric{key="name",lkey="label"}. */
static void render_labelled(struct out *o, struct label_table *t, const char *metric,
                            const char *help, const char *key, const char *lkey)
{
    counter(o, metric, help);
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++)
        emit(o, "%s{%s=\"%s\",%s=\"%s\"} %llu\n", metric, key, t->rows[i].name, lkey,
             t->rows[i].label, t->rows[i].count[0]);
    pthread_mutex_unlock(&t->mu);
}

/* Intercepted requests by route and status, the tokens their answers
 * reported, and the attempts made at backends. */
static void render_inference(struct out *o)
{
    render_labelled(o, &by_status, "egressd_inference_requests_total",
                    "Intercepted requests, by route and status.", "route", "status");
    counter(o, "egressd_inference_tokens_total",
            "Tokens the backends reported, by the route that answered and direction.");
    pthread_mutex_lock(&by_tokens.mu);
    for (size_t i = 0; i < by_tokens.n; i++)
        emit(o,
             "egressd_inference_tokens_total{route=\"%s\",direction=\"input\"} %llu\n"
             "egressd_inference_tokens_total{route=\"%s\",direction=\"output\"} %llu\n",
             by_tokens.rows[i].name, by_tokens.rows[i].count[0], by_tokens.rows[i].name,
             by_tokens.rows[i].count[1]);
    pthread_mutex_unlock(&by_tokens.mu);
    render_labelled(o, &by_attempt, "egressd_inference_attempts_total",
                    "Calls made to backends, by route and result.", "route", "result");
}

/* What egressd counted: decisions, traffic, errors, requests, reloads. */
static void render_counters(struct out *o)
{
    counter(o, "egressd_connections_total", "Decisions made, by action.");
    for (int a = ACTION_DENY; a < ACTION_COUNT; a++)
        emit(o, "egressd_connections_total{action=\"%s\"} %llu\n",
             policy_action_name((enum policy_action)a), atomic_load(&counters.connections[a]));
    static const char *const request_actions[] = {"allow", "deny", "audit"};
    counter(o, "egressd_requests_total", "Requests inside inspected connections, by decision.");
    for (int i = 0; i < 3; i++)
        emit(o, "egressd_requests_total{action=\"%s\"} %llu\n", request_actions[i],
             atomic_load(&counters.requests[i]));
    counter(o, "egressd_denials_total", "Denials, by stage (as the denial record counts them).");
    for (int i = 0; i < DENIAL_STAGES; i++)
        emit(o, "egressd_denials_total{stage=\"%s\"} %llu\n",
             denial_stage_name((enum denial_stage)i), atomic_load(&counters.denials[i]));
    counter(o, "egressd_access_requests_total", "Access requests the sandbox sent.");
    emit(o, "egressd_access_requests_total %llu\n", atomic_load(&counters.access_requests));
    emit(o,
         "# HELP egressd_tunnels_active Tunnels relaying now.\n"
         "# TYPE egressd_tunnels_active gauge\negressd_tunnels_active %lld\n",
         atomic_load(&counters.tunnels_active));
    counter(o, "egressd_bytes_total", "Bytes relayed, up (to upstreams) and down.");
    emit(o,
         "egressd_bytes_total{direction=\"up\"} %llu\negressd_bytes_total{direction=\"down\"} "
         "%llu\n",
         atomic_load(&counters.bytes_up), atomic_load(&counters.bytes_down));
    counter(o, "egressd_upstream_errors_total", "Failures reaching upstreams and backends.");
    for (size_t i = 0; i < N_ERROR_KINDS; i++)
        emit(o, "egressd_upstream_errors_total{kind=\"%s\"} %llu\n", error_kinds[i],
             atomic_load(&counters.upstream_errors[i]));
    render_inference(o);
    render_labelled(o, &by_secret, "egressd_secret_uses_total",
                    "Placeholders swapped for their secret, or refused, by secret and result.",
                    "secret", "result");
    static const char *const refused[REFUSED_N] = {"queue_full", "busy", "descriptors", "stopping"};
    counter(o, "egressd_refused_total", "Connections answered 503 before a worker took them.");
    for (int i = 0; i < REFUSED_N; i++)
        emit(o, "egressd_refused_total{reason=\"%s\"} %llu\n", refused[i],
             atomic_load(&counters.refused[i]));
    counter(o, "egressd_reloads_total", "Configuration reloads, by result.");
    emit(o,
         "egressd_reloads_total{result=\"ok\"} %llu\negressd_reloads_total{result=\"failed\"} "
         "%llu\n",
         atomic_load(&counters.reloads_ok), atomic_load(&counters.reloads_failed));
}

/* What its owners report when asked: the certificate cache, queue, workers,
 * budgets. */
static void render_gauges(struct out *o, const struct metrics_gauges *g)
{
    counter(o, "egressd_cert_cache_hits_total", "Minted certificates found in the cache.");
    emit(o, "egressd_cert_cache_hits_total %llu\n", (unsigned long long)g->cache.hits);
    counter(o, "egressd_cert_cache_misses_total", "Certificates that had to be minted.");
    emit(o, "egressd_cert_cache_misses_total %llu\n", (unsigned long long)g->cache.misses);
    emit(o,
         "# HELP egressd_cert_cache_size Certificates in the cache.\n"
         "# TYPE egressd_cert_cache_size gauge\negressd_cert_cache_size %zu\n",
         g->cache.size);
    emit(o,
         "# HELP egressd_queue_depth Accepted sockets waiting for a worker.\n"
         "# TYPE egressd_queue_depth gauge\negressd_queue_depth %u\n"
         "# HELP egressd_workers Worker threads, by state.\n"
         "# TYPE egressd_workers gauge\n"
         "egressd_workers{state=\"busy\"} %u\negressd_workers{state=\"total\"} %u\n",
         g->queue, g->busy, g->total);
    emit(o, "# HELP egressd_budget_remaining What each budget has left in its window, by kind.\n"
            "# TYPE egressd_budget_remaining gauge\n");
    for (size_t i = 0; i < g->n_budgets; i++)
        emit(o, "egressd_budget_remaining{budget=\"%s\",kind=\"%s\"} %llu\n", g->budgets[i].budget,
             g->budgets[i].kind, (unsigned long long)g->budgets[i].remaining);
}

size_t metrics_render(char *buf, size_t cap, const struct metrics_gauges *g)
{
    struct out o = {buf, cap, 0};
    render_counters(&o);
    render_gauges(&o, g);
    return o.n;
}
