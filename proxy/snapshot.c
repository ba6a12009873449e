/*
 * snapshot.c - the configuration in force: a policy and, when it has
 * [inference], the interception resources (CA, TLS contexts, backend pool).
 *
 * A snapshot is immutable and reference counted.  A connection takes one
 * when it starts and keeps it to its end; a reload builds a whole new one
 * (reusing the interception resources when [tls] did not change) and swaps
 * the pointer.  Taking a reference costs two atomic increments and a load,
 * no lock: a reader announces itself in `acquiring` while it loads the
 * pointer and counts its reference; the swapper, after storing the new
 * pointer, waits for `acquiring` to drain (a few nanoseconds) before it
 * drops the old snapshot, so no reader can count on a freed one.
 */
#include "proxy.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKEND_POOL_IDLE 64

static void intercept_unref(struct intercept *ic)
{
    if (ic == NULL || atomic_fetch_sub(&ic->refs, 1) != 1)
        return;
    backend_pool_free(ic->pool); /* first: its TLS sessions use the client configuration */
    tls_server_free(ic->tls_server);
    tls_client_free(ic->tls_client);
    free(ic);
}

static struct intercept *intercept_new(const struct tls_settings *t, char *err, size_t errlen)
{
    struct intercept *ic = calloc(1, sizeof(*ic));
    if (ic == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&ic->refs, 1);
    ic->set = *t;
    ic->tls_server = tls_server_new(t, err, errlen);
    ic->pool = backend_pool_new(BACKEND_POOL_IDLE);
    if (ic->tls_server == NULL || ic->pool == NULL) {
        if (ic->pool == NULL)
            snprintf(err, errlen, "out of memory");
        intercept_unref(ic);
        return NULL;
    }
    char why[300];
    ic->tls_client = tls_client_new(t->upstream_ca, why, sizeof(why));
    if (ic->tls_client == NULL)
        log_msg(LOGL_WARN, "config", "https:// backends unavailable: %s", why);
    log_msg(LOGL_INFO, "config", "interception CA %s; trust bundle written to %s", t->ca_cert,
            t->bundle);
    return ic;
}

struct snapshot *snapshot_new(struct policy *p, const struct snapshot *prev, char *err,
                              size_t errlen)
{
    struct snapshot *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->pol = p;
    if (policy_uses_tls(p)) {
        const struct tls_settings *t = policy_tls(p);
        struct intercept *old = prev ? prev->ic : NULL;
        if (old != NULL && memcmp(&old->set, t, sizeof(*t)) == 0) {
            atomic_fetch_add(&old->refs, 1); /* [tls] unchanged: same CA, cache and pool */
            s->ic = old;
        } else if ((s->ic = intercept_new(t, err, errlen)) == NULL) {
            free(s);
            return NULL;
        }
    }
    return s;
}

struct snapshot *snapshot_ref(struct snapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void snapshot_unref(struct snapshot *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    intercept_unref(s->ic);
    policy_unref(s->pol);
    free(s);
}

void holder_init(struct snapshot_holder *h, struct snapshot *first)
{
    atomic_init(&h->cur, first);
    atomic_init(&h->acquiring, 0);
    atomic_init(&h->generation, 0);
}

struct snapshot *holder_acquire(struct snapshot_holder *h)
{
    atomic_fetch_add(&h->acquiring, 1);
    struct snapshot *s = snapshot_ref(atomic_load(&h->cur));
    atomic_fetch_sub(&h->acquiring, 1);
    return s;
}

void holder_swap(struct snapshot_holder *h, struct snapshot *next)
{
    struct snapshot *old = atomic_exchange(&h->cur, next);
    atomic_fetch_add(&h->generation, 1);
    while (atomic_load(&h->acquiring) != 0)
        sched_yield(); /* a reader is between its load and its increment */
    snapshot_unref(old);
}

unsigned holder_generation(struct snapshot_holder *h)
{
    return atomic_load_explicit(&h->generation, memory_order_relaxed);
}
