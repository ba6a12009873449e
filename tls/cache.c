/*
 * cache.c - minted leaf certificates, by host, least recently used first
 * out.  A hash table finds an entry, a doubly linked list orders them by
 * use.  Entries are reference counted: one reference is the cache's own,
 * one more per handshake using the entry, so eviction never frees a
 * certificate a handshake is still presenting.
 */
#include "tls_int.h"

#include <stdlib.h>
#include <string.h>

struct leaf_cache {
    pthread_mutex_t mu;
    struct leaf **buckets;
    size_t nbuckets, count, capacity;
    struct leaf *head, *tail; /* most and least recently used */
    uint64_t hits, misses;
};

static size_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)(h % n);
}

struct leaf_cache *leaf_cache_new(size_t capacity)
{
    struct leaf_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->capacity = capacity ? capacity : 1;
    c->nbuckets = c->capacity * 2 + 1;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

static void unref_locked(struct leaf *l)
{
    if (--l->refs == 0) {
        mbedtls_x509_crt_free(&l->crt);
        free(l);
    }
}

static void list_unlink(struct leaf_cache *c, struct leaf *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        c->head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    else
        c->tail = l->prev;
    l->prev = l->next = NULL;
}

static void list_push_front(struct leaf_cache *c, struct leaf *l)
{
    l->prev = NULL;
    l->next = c->head;
    if (c->head)
        c->head->prev = l;
    c->head = l;
    if (c->tail == NULL)
        c->tail = l;
}

static void remove_locked(struct leaf_cache *c, struct leaf *l)
{
    struct leaf **pp = &c->buckets[hash(l->host, c->nbuckets)];
    while (*pp != l)
        pp = &(*pp)->hnext;
    *pp = l->hnext;
    list_unlink(c, l);
    c->count--;
    unref_locked(l);
}

void leaf_cache_free(struct leaf_cache *c)
{
    if (c == NULL)
        return;
    while (c->tail != NULL)
        remove_locked(c, c->tail);
    pthread_mutex_destroy(&c->mu);
    free(c->buckets);
    free(c);
}

struct leaf *leaf_cache_get(struct leaf_cache *c, const char *host, time_t now)
{
    pthread_mutex_lock(&c->mu);
    struct leaf *l = c->buckets[hash(host, c->nbuckets)];
    while (l != NULL && strcmp(l->host, host) != 0)
        l = l->hnext;
    if (l != NULL && now >= l->renew_after) {
        remove_locked(c, l); /* close to expiry: mint a new one */
        l = NULL;
    }
    if (l != NULL) {
        list_unlink(c, l);
        list_push_front(c, l);
        l->refs++;
        c->hits++;
    }
    pthread_mutex_unlock(&c->mu);
    return l;
}

void leaf_cache_put(struct leaf_cache *c, struct leaf *l)
{
    pthread_mutex_lock(&c->mu);
    size_t b = hash(l->host, c->nbuckets);
    for (struct leaf *o = c->buckets[b]; o != NULL; o = o->hnext) {
        if (strcmp(o->host, l->host) == 0) {
            remove_locked(c, o); /* a newer mint of the same host replaces it */
            break;
        }
    }
    while (c->count >= c->capacity)
        remove_locked(c, c->tail);
    l->refs++;
    c->misses++; /* a put is a mint: what a miss costs */
    l->hnext = c->buckets[b];
    c->buckets[b] = l;
    list_push_front(c, l);
    c->count++;
    pthread_mutex_unlock(&c->mu);
}

void leaf_release(struct leaf_cache *c, struct leaf *l)
{
    pthread_mutex_lock(&c->mu);
    unref_locked(l);
    pthread_mutex_unlock(&c->mu);
}

void leaf_cache_stats(struct leaf_cache *c, struct tls_cache_stats *st)
{
    pthread_mutex_lock(&c->mu);
    st->hits = c->hits;
    st->misses = c->misses;
    st->size = c->count;
    pthread_mutex_unlock(&c->mu);
}
