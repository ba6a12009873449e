/*
 * pool.c - the worker threads, and how a new connection reaches one.
 *
 * An idle worker waits on its own semaphore in a stack of idle workers: a
 * new socket goes to the one that went idle last (its stack still warm),
 * and exactly that worker wakes, without retaking a lock.  (A shared
 * condition variable woke a worker that often found the socket already
 * taken by one just finishing, and both then fought for the mutex: two to
 * four extra context switches per connection.)  With no worker idle,
 * sockets wait in a bounded queue, and the pool grows by one thread per
 * waiting socket up to `max_workers`; a worker finishing a connection
 * takes from the queue before it goes idle.  Past capacity every client is
 * answered: a full queue at once, a socket queued longer than
 * queue_timeout when the acceptor next looks (pool_reap), both with 503.
 * A worker idle for a second gives its relay pipes back; one idle for
 * POOL_SHRINK_MS above the base count leaves (the stack order leaves the
 * longest idle at the bottom, where their time runs out).  Stacks are
 * small: a worker needs little more than its connection, on the heap.
 */
#include "proxy.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORKER_STACK   (256 * 1024)
#define POOL_SHRINK_MS 30000
#define PIPES_IDLE_MS  1000

struct queued {
    int fd;                       /* -1: no socket, the pool is stopping */
    struct sockaddr_storage peer; /* from accept: no getpeername per connection */
    int64_t since;                /* when it was queued */
};

/* A waiting worker, on its own stack; linked into the idle stack under mu. */
struct idler {
    sem_t wake;
    struct queued job;
    bool handed; /* popped by pool_submit (or stop): a post is on its way */
    struct idler *up, *down;
};

struct pool {
    struct runtime *rt;
    pthread_mutex_t mu; /* everything below */
    pthread_cond_t idle_change;
    struct queued *q;
    size_t qcap, qhead, qlen;
    struct idler *idle_top; /* the worker that went idle last */
    unsigned total, starting, busy, base, max, queue_wait_ms;
    bool stopping;
    int64_t refused_logged; /* the acceptor's: rate limit of the refusal line */
    unsigned refused_unlogged;
};

static void *worker_main(void *arg);

/* Called with mu held. */
static void spawn_worker(struct pool *p)
{
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, WORKER_STACK);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &a, worker_main, p);
    pthread_attr_destroy(&a);
    if (rc != 0) { /* the socket waits; queue_timeout answers it */
        log_msg(LOGL_ERROR, "server", "cannot start a worker thread: %s", strerror(rc));
        return;
    }
    p->total++;
    p->starting++;
}

/* Called with mu held: the idle stack. */
static void idle_push(struct pool *p, struct idler *me)
{
    me->handed = false;
    me->up = NULL;
    me->down = p->idle_top;
    if (p->idle_top != NULL)
        p->idle_top->up = me;
    p->idle_top = me;
}

static void idle_remove(struct pool *p, struct idler *w)
{
    if (w->up != NULL)
        w->up->down = w->down;
    else
        p->idle_top = w->down;
    if (w->down != NULL)
        w->down->up = w->up;
}

/* Pop the worker that went idle last and give it job; the caller posts
 * its semaphore once mu is released.  NULL when none is idle. */
static struct idler *idle_hand(struct pool *p, struct queued job)
{
    struct idler *w = p->idle_top;
    if (w != NULL) {
        idle_remove(p, w);
        w->job = job;
        w->handed = true;
    }
    return w;
}

/* Called with mu held: wait idle until dl; true when handed a job. */
static bool wait_idle(struct pool *p, struct idler *me, struct timespec dl)
{
    int rc;
    idle_push(p, me);
    pthread_mutex_unlock(&p->mu);
    while ((rc = sem_clockwait(&me->wake, CLOCK_MONOTONIC, &dl)) != 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&p->mu);
    if (me->handed) {
        /* the post may still be on its way (a timeout raced the hand-over):
         * it follows the submitter's unlock with nothing in between */
        while (rc != 0 && (rc = sem_wait(&me->wake)) != 0 && errno == EINTR)
            ;
        return true;
    }
    idle_remove(p, me); /* timed out, nobody took us */
    return false;
}

/* Called with mu held, and returns with it held: the next socket for this
 * worker (fd -1 when it is to leave: stopping, or idle too long above the
 * base size). */
static struct queued next_job(struct pool *p, struct idler *me, struct relay_pipes *pipes)
{
    bool pipes_kept = true;
    for (;;) {
        if (p->qlen > 0) {
            struct queued j = p->q[p->qhead];
            p->qhead = (p->qhead + 1) % p->qcap;
            p->qlen--;
            return j;
        }
        if (p->stopping)
            return (struct queued){.fd = -1};
        unsigned wait_ms = pipes_kept ? PIPES_IDLE_MS : POOL_SHRINK_MS - PIPES_IDLE_MS;
        if (wait_idle(p, me, deadline_in(wait_ms)))
            return me->job;
        if (pipes_kept) { /* idle for a while: an idle worker holds no descriptors */
            relay_pipes_close(pipes);
            pipes_kept = false;
        } else if (p->total > p->base) {
            return (struct queued){.fd = -1};
        }
    }
}

static void *worker_main(void *arg)
{
    struct pool *p = arg;
    struct relay_pipes pipes = RELAY_PIPES_INIT;
    struct idler me = {0};
    bool ok = sem_init(&me.wake, 0, 0) == 0;
    if (!ok)
        log_msg(LOGL_ERROR, "server", "cannot start a worker: sem_init: %s", strerror(errno));
    pthread_mutex_lock(&p->mu);
    p->starting--;
    while (ok) {
        struct queued j = next_job(p, &me, &pipes);
        if (j.fd < 0)
            break;
        p->busy++;
        pthread_mutex_unlock(&p->mu);
        serve_connection(p->rt, j.fd, &j.peer, &pipes);
        pthread_mutex_lock(&p->mu);
        p->busy--;
    }
    p->total--;
    pthread_cond_broadcast(&p->idle_change);
    pthread_mutex_unlock(&p->mu);
    if (ok)
        sem_destroy(&me.wake);
    relay_pipes_close(&pipes);
    return NULL;
}

void pool_refuse(int fd, const char *why)
{
    char junk[4096];
    struct stream *s = stream_plain(fd);
    /* read what already arrived, so that closing does not reset the 503 away */
    while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
        ;
    if (s != NULL)
        (void)http_send_error(s, &ERR_OVERLOADED, why, NULL, now_ms() + 2000);
    stream_free(s);
    shutdown(fd, SHUT_WR);
    close(fd);
}

/* One log line a second at most about refused connections, however many
 * (called by the acceptor only). */
static void refused(struct pool *p, enum refused kind, const char *why)
{
    int64_t now = now_ms();
    metrics_refused(kind);
    p->refused_unlogged++;
    if (now - p->refused_logged < 1000)
        return;
    log_msg(LOGL_WARN, "connect", "refused %u connection%s with 503: %s", p->refused_unlogged,
            p->refused_unlogged == 1 ? "" : "s", why);
    p->refused_logged = now;
    p->refused_unlogged = 0;
}

void pool_submit(struct pool *p, int fd, const struct sockaddr_storage *peer)
{
    pthread_mutex_lock(&p->mu);
    struct idler *w = p->stopping ? NULL : idle_hand(p, (struct queued){fd, *peer, 0});
    if (w != NULL) {
        pthread_mutex_unlock(&p->mu);
        sem_post(&w->wake); /* cannot fail: the count is 0 or 1 */
        return;
    }
    if (p->qlen == p->qcap || p->stopping) {
        bool stopping = p->stopping;
        pthread_mutex_unlock(&p->mu);
        refused(p, stopping ? REFUSED_STOPPING : REFUSED_QUEUE_FULL,
                stopping ? "shutting down" : "the queue is full");
        pool_refuse(fd,
                    stopping ? "egressd is shutting down" : "too many connections waiting; retry");
        return;
    }
    p->q[(p->qhead + p->qlen) % p->qcap] = (struct queued){fd, *peer, now_ms()};
    p->qlen++;
    if (p->starting < p->qlen && p->total < p->max)
        spawn_worker(p);
    pthread_mutex_unlock(&p->mu);
}

/* The oldest queued socket when it has waited too long, else -1. */
static int take_overdue(struct pool *p, int64_t now)
{
    int fd = -1;
    pthread_mutex_lock(&p->mu);
    if (p->qlen > 0 && now - p->q[p->qhead].since >= p->queue_wait_ms) {
        fd = p->q[p->qhead].fd;
        p->qhead = (p->qhead + 1) % p->qcap;
        p->qlen--;
    }
    pthread_mutex_unlock(&p->mu);
    return fd;
}

void pool_reap(struct pool *p)
{
    int64_t now = now_ms();
    for (int fd; (fd = take_overdue(p, now)) >= 0;) {
        refused(p, REFUSED_BUSY, "every worker is busy");
        pool_refuse(fd, "every worker is busy; retry");
    }
}

void pool_note_shed(struct pool *p)
{
    refused(p, REFUSED_DESCRIPTORS, "out of file descriptors");
}

struct pool *pool_start(struct runtime *rt, const struct pool_settings *ps)
{
    struct pool *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->q = calloc(ps->queue, sizeof(*p->q))) == NULL) {
        free(p);
        return NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->idle_change, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p->mu, NULL);
    p->rt = rt;
    p->qcap = ps->queue;
    pthread_mutex_lock(&p->mu);
    p->base = ps->base, p->max = ps->max, p->queue_wait_ms = ps->queue_wait_ms;
    for (unsigned i = 0; i < p->base; i++)
        spawn_worker(p);
    pthread_mutex_unlock(&p->mu);
    return p;
}

void pool_resize(struct pool *p, const struct pool_settings *ps)
{
    pthread_mutex_lock(&p->mu);
    p->base = ps->base, p->max = ps->max, p->queue_wait_ms = ps->queue_wait_ms;
    pthread_mutex_unlock(&p->mu);
}

void pool_gauges(struct pool *p, struct metrics_gauges *g)
{
    pthread_mutex_lock(&p->mu);
    g->queue = (unsigned)p->qlen;
    g->busy = p->busy;
    g->total = p->total;
    pthread_mutex_unlock(&p->mu);
}

/* Called with mu held: every idle worker handed "leave". */
static void wake_idle_to_leave(struct pool *p)
{
    struct idler *w, *woken = NULL;
    while ((w = idle_hand(p, (struct queued){.fd = -1})) != NULL) {
        w->down = woken; /* off the stack: reuse the link for the list to post */
        woken = w;
    }
    pthread_mutex_unlock(&p->mu);
    for (w = woken; w != NULL;) {
        struct idler *next = w->down; /* read before the post: w may be gone after */
        sem_post(&w->wake);
        w = next;
    }
    pthread_mutex_lock(&p->mu);
}

unsigned pool_stop(struct pool *p, unsigned timeout_ms)
{
    struct timespec dl = deadline_in(timeout_ms);
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    wake_idle_to_leave(p);
    while (p->qlen > 0) { /* accepted but never served: tell them */
        int fd = p->q[p->qhead].fd;
        p->qhead = (p->qhead + 1) % p->qcap;
        p->qlen--;
        pool_refuse(fd, "egressd is shutting down");
    }
    /* idle workers leave at once; busy ones when their connection ends */
    while (p->total > 0 && pthread_cond_timedwait(&p->idle_change, &p->mu, &dl) != ETIMEDOUT)
        ;
    unsigned busy = p->busy, total = p->total;
    pthread_mutex_unlock(&p->mu);
    if (total > 0)
        return busy > 0 ? busy : total; /* workers still use p: the process exit reclaims it */
    pthread_cond_destroy(&p->idle_change);
    pthread_mutex_destroy(&p->mu);
    free(p->q);
    free(p);
    return 0;
}
