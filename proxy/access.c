/*
 * access.c - access requests: what the sandbox asks the operator to allow
 * (POST http://egressd.local/requests), kept for admin GET /requests.
 *
 * A request is a small JSON object, {"host","port","method"?,"path"?,
 * "reason"}, read strictly: one valid object (no member named twice or
 * alike), a host as rules parse it, a port from 1 to 65535, a method as
 * rules spell it, a path that starts with '/', a reason that says
 * something, each bounded.  Nothing is ever allowed by it: it is recorded,
 * with who asked when identity is configured, in a ring of the last
 * ACCESS_KEPT requests (the oldest dropped), which lives in the daemon's
 * runtime and so survives reloads.
 */
#include "proxy.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACCESS_KEPT 256

struct access_entry {
    unsigned long long id;
    int64_t at_ms;
    struct access_request r;
    char src[INET6_ADDRSTRLEN + 8];
    long pid; /* -1: not known */
    char binary[IDENTITY_PATH_MAX];
};

struct access_log {
    pthread_mutex_t mu;
    struct access_entry *ring[ACCESS_KEPT]; /* by id modulo ACCESS_KEPT */
    unsigned long long next_id;             /* ids from 1 */
};

/* ---- reading one ------------------------------------------------------------------ */

enum { K_HOST, K_PORT, K_METHOD, K_PATH, K_REASON, K_N };

/* A string member into out: 1, 0 when absent or null, -1 (err) when bad. */
static int member_string(const char *js, const struct json_span *sp, const char *name, char *out,
                         size_t cap, char *err, size_t errlen)
{
    const char *why;
    size_t n = sp->end - sp->start;
    if (!sp->found || (n == 4 && memcmp(js + sp->start, "null", 4) == 0))
        return 0;
    if (js[sp->start] != '"')
        why = "not a string";
    else if (json_string(js + sp->start, n, out, cap, &why) >= 0)
        return 1;
    snprintf(err, errlen, "%s: %s", name, why);
    return -1;
}

static int port_member(const char *js, const struct json_span *sp, uint16_t *port, char *err,
                       size_t errlen)
{
    unsigned v = 0;
    size_t n = sp->end - sp->start;
    bool digits = sp->found && n > 0 && n <= 5;
    for (size_t i = 0; digits && i < n; i++) {
        digits = js[sp->start + i] >= '0' && js[sp->start + i] <= '9';
        v = v * 10 + (unsigned)(js[sp->start + i] - '0');
    }
    if (!digits || v == 0 || v > 65535) {
        snprintf(err, errlen, "port: %s", sp->found ? "not a number from 1 to 65535" : "missing");
        return -1;
    }
    *port = (uint16_t)v;
    return 0;
}

static int host_member(const char *js, const struct json_span *sp, char *out, size_t cap, char *err,
                       size_t errlen)
{
    char raw[POLICY_HOST_MAX + 3], spelled[POLICY_HOST_MAX + 5];
    struct host h;
    const char *why;
    int got = member_string(js, sp, "host", raw, sizeof(raw), err, errlen);
    if (got <= 0) {
        if (got == 0)
            snprintf(err, errlen, "host: missing");
        return -1;
    }
    snprintf(spelled, sizeof(spelled), strchr(raw, ':') && raw[0] != '[' ? "[%s]" : "%s", raw);
    if (host_parse(spelled, strlen(spelled), &h, &why) != 0) {
        snprintf(err, errlen, "host: %s", why);
        return -1;
    }
    snprintf(out, cap, "%s", h.name);
    return 0;
}

/* method, path and reason: bounded, as rules spell them, saying something. */
static int request_members(const char *js, const struct json_span *sp, struct access_request *r,
                           char *err, size_t errlen)
{
    int m = member_string(js, &sp[K_METHOD], "method", r->method, sizeof(r->method), err, errlen);
    int p =
        m < 0 ? -1 : member_string(js, &sp[K_PATH], "path", r->path, sizeof(r->path), err, errlen);
    int why = p < 0 ? -1
                    : member_string(js, &sp[K_REASON], "reason", r->reason, sizeof(r->reason), err,
                                    errlen);
    if (why < 0)
        return -1;
    if (m > 0 && !policy_method_ok(r->method))
        snprintf(err, errlen, "method: not a method (upper case, like GET)");
    else if (p > 0 && (r->path[0] != '/' || strpbrk(r->path, "\r\n\t") != NULL))
        snprintf(err, errlen, "path: not a path (it starts with '/', one line)");
    else if (why == 0 || strspn(r->reason, " \t\r\n") == strlen(r->reason))
        snprintf(err, errlen, "reason: missing (say why the access is needed)");
    else
        return 0;
    return -1;
}

int access_parse(const char *body, size_t len, struct access_request *r, char *err, size_t errlen)
{
    static const char *const keys[K_N] = {"host", "port", "method", "path", "reason"};
    struct json_span sp[K_N];
    const char *why;
    memset(r, 0, sizeof(*r));
    if (json_object_scan(body, len, keys, K_N, sp, &why) != JSON_OK) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (host_member(body, &sp[K_HOST], r->host, sizeof(r->host), err, errlen) != 0 ||
        port_member(body, &sp[K_PORT], &r->port, err, errlen) != 0)
        return -1;
    return request_members(body, sp, r, err, errlen);
}

/* ---- the log of them ----------------------------------------------------------------- */

struct access_log *access_log_new(void)
{
    struct access_log *a = calloc(1, sizeof(*a));
    if (a != NULL) {
        pthread_mutex_init(&a->mu, NULL);
        a->next_id = 1;
    }
    return a;
}

void access_log_free(struct access_log *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < ACCESS_KEPT; i++)
        free(a->ring[i]);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

unsigned long long access_log_add(struct access_log *a, const struct access_request *r,
                                  const char *src, long pid, const char *binary)
{
    struct access_entry *e = malloc(sizeof(*e));
    if (e == NULL)
        return 0;
    *e = (struct access_entry){.at_ms = wall_ms(), .r = *r, .pid = pid};
    snprintf(e->src, sizeof(e->src), "%s", src ? src : "");
    snprintf(e->binary, sizeof(e->binary), "%s", binary ? binary : "");
    pthread_mutex_lock(&a->mu);
    e->id = a->next_id++;
    struct access_entry **slot = &a->ring[e->id % ACCESS_KEPT], *old = *slot;
    *slot = e;
    pthread_mutex_unlock(&a->mu);
    free(old);
    return e->id;
}

static void put_entry(struct sbuf *b, const struct access_entry *e, bool first)
{
    char at[40];
    format_wall_ms(e->at_ms, at, sizeof(at));
    sbuf_printf(b, "%s\n{\"id\":%llu,\"time\":\"%s\"", first ? "" : ",", e->id, at);
    json_put_member(b, "host", e->r.host);
    sbuf_printf(b, ",\"port\":%u", e->r.port);
    json_put_member(b, "method", e->r.method[0] ? e->r.method : NULL);
    json_put_member(b, "path", e->r.path[0] ? e->r.path : NULL);
    json_put_member(b, "reason", e->r.reason);
    json_put_member(b, "src", e->src);
    if (e->pid >= 0)
        sbuf_printf(b, ",\"pid\":%ld", e->pid);
    json_put_member(b, "binary", e->binary[0] ? e->binary : NULL);
    sbuf_str(b, "}");
}

char *access_log_json(struct access_log *a, size_t *len)
{
    /* every string escaped at most sixfold, and the rest of an entry */
    size_t per = 6 * sizeof(struct access_entry) + 256, cap = ACCESS_KEPT * per + 64;
    char *out = malloc(cap);
    struct sbuf b;
    if (out == NULL)
        return NULL;
    sbuf_init(&b, out, cap);
    pthread_mutex_lock(&a->mu);
    sbuf_printf(&b, "{\"requests\":[");
    bool first = true;
    for (unsigned long long id = a->next_id - 1; id > 0 && id + ACCESS_KEPT >= a->next_id; id--) {
        const struct access_entry *e = a->ring[id % ACCESS_KEPT];
        if (e != NULL && e->id == id) {
            put_entry(&b, e, first);
            first = false;
        }
    }
    pthread_mutex_unlock(&a->mu);
    sbuf_str(&b, "\n]}\n");
    *len = b.len;
    if (b.cut) {
        free(out);
        return NULL;
    }
    return out;
}
