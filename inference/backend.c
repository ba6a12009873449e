/*
 * backend.c - connections to model backends, kept alive and reused.
 *
 * A pool of idle connections, newest first, shared by all workers behind
 * one mutex (held for list operations only, never for I/O).  A connection
 * idle too long, or one the backend has closed or written to while idle
 * (a readable socket), is dropped instead of reused.  https:// backends get
 * a verified TLS session on top of the socket the dial callback returns.
 */
#include "infer_int.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POOL_IDLE_MS 30000

struct backend_pool {
    pthread_mutex_t mu;
    struct backend_conn *idle; /* newest first */
    size_t count, max_idle;
};

struct backend_pool *backend_pool_new(size_t max_idle)
{
    struct backend_pool *bp = calloc(1, sizeof(*bp));
    if (bp == NULL)
        return NULL;
    pthread_mutex_init(&bp->mu, NULL);
    bp->max_idle = max_idle;
    return bp;
}

static void backend_close(struct backend_conn *b)
{
    stream_free(b->in.s);
    close(b->fd);
    free(b);
}

void backend_pool_free(struct backend_pool *bp)
{
    if (bp == NULL)
        return;
    while (bp->idle != NULL) {
        struct backend_conn *b = bp->idle;
        bp->idle = b->next;
        backend_close(b);
    }
    pthread_mutex_destroy(&bp->mu);
    free(bp);
}

static void conn_key(const struct route *r, char *key, size_t len)
{
    snprintf(key, len, "%s://%s:%u", r->scheme == ENDPOINT_HTTPS ? "https" : "http", r->host,
             r->port);
}

/* An idle connection under key, unlinked; stale ones on the way are closed. */
static struct backend_conn *pool_take(struct backend_pool *bp, const char *key)
{
    struct backend_conn *found = NULL, *stale = NULL;
    int64_t now = now_ms();
    pthread_mutex_lock(&bp->mu);
    for (struct backend_conn **pp = &bp->idle; *pp != NULL;) {
        struct backend_conn *b = *pp;
        bool old = now - b->idle_since > POOL_IDLE_MS;
        if (!old && (found != NULL || strcmp(b->key, key) != 0)) {
            pp = &b->next;
            continue;
        }
        *pp = b->next;
        bp->count--;
        if (old) {
            b->next = stale;
            stale = b;
        } else {
            found = b;
        }
    }
    pthread_mutex_unlock(&bp->mu);
    while (stale != NULL) {
        struct backend_conn *b = stale;
        stale = b->next;
        backend_close(b);
    }
    /* readable while idle: closed by the backend, or junk we must not read as a response */
    if (found != NULL && fd_wait(found->fd, POLLIN, 0) != 0) {
        backend_close(found);
        found = NULL;
    }
    return found;
}

static struct backend_conn *conn_new(const struct inference_env *env, const struct route *r,
                                     const char *key, char *err, size_t errlen)
{
    if (r->scheme == ENDPOINT_HTTPS && env->tls == NULL) {
        snprintf(err, errlen, "no roots loaded for HTTPS backends (upstream_ca)");
        return NULL;
    }
    int fd = env->dial(env->dial_ctx, r->host, r->port, err, errlen);
    if (fd < 0)
        return NULL;
    struct backend_conn *b = malloc(sizeof(*b));
    if (b != NULL) {
        b->fd = fd;
        b->next = NULL;
        snprintf(b->key, sizeof(b->key), "%s", key);
        struct stream *s =
            r->scheme == ENDPOINT_HTTPS
                ? tls_client_connect(env->tls, fd, r->host, now_ms() + r->timeout_ms, err, errlen)
                : stream_plain(fd);
        bufconn_init(&b->in, s, b->buf, sizeof(b->buf));
        if (s != NULL)
            return b;
        free(b);
    } else {
        snprintf(err, errlen, "out of memory");
    }
    close(fd);
    return NULL;
}

struct backend_conn *backend_open(const struct inference_env *env, const struct route *r,
                                  bool fresh, bool *reused, char *err, size_t errlen)
{
    char key[sizeof(((struct backend_conn *)0)->key)];
    conn_key(r, key, sizeof(key));
    struct backend_conn *b = fresh ? NULL : pool_take(env->pool, key);
    *reused = b != NULL;
    return b != NULL ? b : conn_new(env, r, key, err, errlen);
}

void backend_done(const struct inference_env *env, struct backend_conn *b, bool reusable)
{
    struct backend_pool *bp = env->pool;
    struct backend_conn *evict = NULL;
    if (!reusable || b->in.len > 0) { /* leftover bytes: the backend said more than it should */
        backend_close(b);
        return;
    }
    b->idle_since = now_ms();
    pthread_mutex_lock(&bp->mu);
    b->next = bp->idle;
    bp->idle = b;
    if (++bp->count > bp->max_idle) { /* drop the oldest */
        struct backend_conn **pp = &bp->idle;
        while ((*pp)->next != NULL)
            pp = &(*pp)->next;
        evict = *pp;
        *pp = NULL;
        bp->count--;
    }
    pthread_mutex_unlock(&bp->mu);
    if (evict != NULL)
        backend_close(evict);
}
