/*
 * denials.c - the denial record: what egressd refused, aggregated, so that
 * an operator (admin GET /denials) and the sandbox itself
 * (http://egressd.local/denials) can see what was denied and how often,
 * and `egressd --suggest` can propose rules for it.
 *
 * An entry is keyed by host, port and calling program, and for a request
 * inside an inspected connection by method and path, the path folded to
 * its first three segments (so that /repos/acme/x/issues/1 and .../2 are
 * one entry); it counts denials and keeps the first and last time, and the
 * last stage, rule and reason.  The record is bounded: at `denial_record`
 * entries, a new key evicts the least recently seen one.  A hash table
 * finds an entry, a list keeps them in order of last sighting; one mutex
 * guards both, held for a lookup and a move (workers) or one walk (a
 * reader).  It lives in the daemon's runtime, not in the configuration,
 * so it survives reloads; a reload may resize it.
 */
#include "proxy.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FIELD_MAX  512 /* of a binary or path kept in a key */
#define RULE_MAX   64
#define REASON_MAX 160
#define ENTRY_JSON 640 /* an entry's JSON beyond its escaped strings */
#define ESCAPED(n) ((n)*6 + 1)

struct denial {
    struct denial *newer, *older; /* the list, by last sighting */
    struct denial *next;          /* the hash chain */
    uint64_t hash;
    uint16_t port;
    enum denial_stage stage;
    unsigned long long count;
    int64_t first_ms, last_ms; /* wall clock */
    char rule[RULE_MAX], reason[REASON_MAX];
    const char *host, *binary, *method, *path; /* into key; "" when not known */
    size_t key_len;
    char key[]; /* host NUL binary NUL method NUL path NUL */
};

struct denials {
    pthread_mutex_t mu;
    struct denial **buckets;
    size_t n_buckets; /* a power of two */
    struct denial *newest, *oldest;
    size_t n, cap;
    unsigned long long evicted;
};

int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t buckets_for(size_t cap)
{
    size_t n = 16;
    while (n < 2 * cap)
        n *= 2;
    return n;
}

struct denials *denials_new(unsigned cap)
{
    struct denials *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->n_buckets = buckets_for(cap);
    d->cap = cap;
    if ((d->buckets = calloc(d->n_buckets, sizeof(*d->buckets))) == NULL) {
        free(d);
        return NULL;
    }
    pthread_mutex_init(&d->mu, NULL);
    return d;
}

/* ---- the table and the list (mu held) ----------------------------------------------- */

static void unlink_entry(struct denials *d, struct denial *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        d->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        d->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void push_newest(struct denials *d, struct denial *e)
{
    e->older = d->newest;
    e->newer = NULL;
    if (d->newest != NULL)
        d->newest->newer = e;
    d->newest = e;
    if (d->oldest == NULL)
        d->oldest = e;
}

static void drop_oldest(struct denials *d)
{
    struct denial *e = d->oldest;
    struct denial **p = &d->buckets[e->hash & (d->n_buckets - 1)];
    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    unlink_entry(d, e);
    free(e);
    d->n--;
    d->evicted++;
}

/* The key's bytes into buf (the host, binary, method and folded path,
 * each NUL-terminated); its length. */
static size_t make_key(const struct denial_note *n, char *buf, size_t cap)
{
    char folded[FIELD_MAX];
    folded[0] = '\0';
    if (n->method != NULL && n->path != NULL)
        policy_path_fold(n->path, folded, sizeof(folded));
    int w =
        snprintf(buf, cap, "%.253s%c%.511s%c%.31s%c%s", n->host ? n->host : "", 0,
                 n->binary ? n->binary : "", 0, n->method && n->path ? n->method : "", 0, folded);
    return w < 0 ? 0 : (size_t)w + 1 < cap ? (size_t)w + 1 : cap;
}

static uint64_t key_hash(const char *key, size_t len, uint16_t port)
{
    uint64_t h = 1469598103934665603ull ^ port;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    return h;
}

static struct denial *find(struct denials *d, const char *key, size_t len, uint16_t port,
                           uint64_t h)
{
    for (struct denial *e = d->buckets[h & (d->n_buckets - 1)]; e != NULL; e = e->next)
        if (e->hash == h && e->port == port && e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

static struct denial *insert(struct denials *d, const char *key, size_t len, uint16_t port,
                             uint64_t h)
{
    struct denial *e = calloc(1, sizeof(*e) + len);
    if (e == NULL)
        return NULL;
    if (d->n >= d->cap)
        drop_oldest(d);
    memcpy(e->key, key, len);
    e->key_len = len;
    e->host = e->key;
    e->binary = e->host + strlen(e->host) + 1;
    e->method = e->binary + strlen(e->binary) + 1;
    e->path = e->method + strlen(e->method) + 1;
    e->port = port;
    e->hash = h;
    e->next = d->buckets[h & (d->n_buckets - 1)];
    d->buckets[h & (d->n_buckets - 1)] = e;
    push_newest(d, e);
    d->n++;
    return e;
}

/* ---- what the daemon calls ------------------------------------------------------------- */

void denials_add(struct denials *d, const struct denial_note *n, unsigned long long count,
                 int64_t first_ms, int64_t last_ms)
{
    char key[POLICY_HOST_MAX + 2 * FIELD_MAX + 64];
    size_t len = make_key(n, key, sizeof(key));
    uint16_t port = (uint16_t)n->port;
    uint64_t h = key_hash(key, len, port);
    pthread_mutex_lock(&d->mu);
    struct denial *e = d->cap > 0 ? find(d, key, len, port, h) : NULL;
    if (e != NULL) {
        unlink_entry(d, e);
        push_newest(d, e);
    } else if (d->cap > 0 && (e = insert(d, key, len, port, h)) != NULL) {
        e->first_ms = first_ms;
    }
    if (e != NULL) {
        e->count += count;
        e->first_ms = first_ms < e->first_ms ? first_ms : e->first_ms;
        e->last_ms = last_ms > e->last_ms ? last_ms : e->last_ms;
        e->stage = n->stage;
        snprintf(e->rule, sizeof(e->rule), "%s", n->rule ? n->rule : "");
        snprintf(e->reason, sizeof(e->reason), "%s", n->reason ? n->reason : "");
    }
    pthread_mutex_unlock(&d->mu);
}

void denials_note(struct denials *d, const struct denial_note *n)
{
    int64_t now = wall_ms();
    metrics_denial(n->stage);
    if (d != NULL)
        denials_add(d, n, 1, now, now);
}

void denials_resize(struct denials *d, unsigned cap)
{
    size_t nb = buckets_for(cap);
    struct denial **b = nb != d->n_buckets ? calloc(nb, sizeof(*b)) : NULL;
    pthread_mutex_lock(&d->mu);
    d->cap = cap;
    while (d->n > d->cap)
        drop_oldest(d);
    if (b != NULL) { /* rehash; without the memory, the old table serves on */
        for (struct denial *e = d->oldest; e != NULL; e = e->newer) {
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
        free(d->buckets);
        d->buckets = b;
        d->n_buckets = nb;
    }
    pthread_mutex_unlock(&d->mu);
}

size_t denials_clear(struct denials *d)
{
    pthread_mutex_lock(&d->mu);
    size_t n = d->n;
    while (d->oldest != NULL)
        drop_oldest(d);
    d->evicted = 0;
    pthread_mutex_unlock(&d->mu);
    return n;
}

void denials_free(struct denials *d)
{
    if (d == NULL)
        return;
    denials_clear(d);
    pthread_mutex_destroy(&d->mu);
    free(d->buckets);
    free(d);
}

void denials_each(struct denials *d, void (*fn)(void *ctx, const struct denial_seen *s), void *ctx)
{
    pthread_mutex_lock(&d->mu);
    for (struct denial *e = d->newest; e != NULL; e = e->older) {
        struct denial_seen s = {.host = e->host,
                                .port = e->port,
                                .binary = e->binary[0] ? e->binary : NULL,
                                .method = e->method[0] ? e->method : NULL,
                                .path = e->method[0] ? e->path : NULL,
                                .stage = denial_stage_name(e->stage),
                                .count = e->count};
        fn(ctx, &s);
    }
    pthread_mutex_unlock(&d->mu);
}

/* ---- JSON ------------------------------------------------------------------------------ */

void format_wall_ms(int64_t ms, char *buf, size_t cap)
{
    struct tm tm;
    time_t t = (time_t)(ms / 1000);
    char ts[32];
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%03dZ", ts, (int)(ms % 1000));
}

static void put_entry(struct sbuf *b, const struct denial *e, bool first)
{
    char t0[40], t1[40];
    format_wall_ms(e->first_ms, t0, sizeof(t0));
    format_wall_ms(e->last_ms, t1, sizeof(t1));
    char host[ESCAPED(POLICY_HOST_MAX)];
    json_escape(host, sizeof(host), e->host);
    sbuf_printf(b, "%s\n{\"host\":\"%s\",\"port\":%u", first ? "" : ",", host, e->port);
    json_put_member(b, "binary", e->binary[0] ? e->binary : NULL);
    json_put_member(b, "method", e->method[0] ? e->method : NULL);
    json_put_member(b, "path", e->method[0] ? e->path : NULL);
    sbuf_printf(b, ",\"stage\":\"%s\",\"count\":%llu,\"first_seen\":\"%s\",\"last_seen\":\"%s\"",
                denial_stage_name(e->stage), e->count, t0, t1);
    json_put_member(b, "rule", e->rule[0] ? e->rule : NULL);
    json_put_member(b, "reason", e->reason[0] ? e->reason : NULL);
    sbuf_str(b, "}");
}

char *denials_json(struct denials *d, size_t *len)
{
    pthread_mutex_lock(&d->mu);
    size_t cap = 256;
    for (struct denial *e = d->newest; e != NULL; e = e->older)
        cap += ESCAPED(e->key_len + RULE_MAX + REASON_MAX) + ENTRY_JSON;
    char *out = malloc(cap);
    if (out != NULL) {
        struct sbuf b;
        sbuf_init(&b, out, cap);
        sbuf_printf(&b, "{\"capacity\":%zu,\"entries\":%zu,\"evicted\":%llu,\"denials\":[", d->cap,
                    d->n, d->evicted);
        for (struct denial *e = d->newest; e != NULL; e = e->older)
            put_entry(&b, e, e == d->newest);
        sbuf_str(&b, "\n]}\n");
        *len = b.len;
        if (b.cut) { /* the bound above is wrong: never a cut JSON */
            free(out);
            out = NULL;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return out;
}
