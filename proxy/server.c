/*
 * server.c - listener, acceptor, worker pool, configuration snapshot and
 * signals.
 *
 * The acceptor thread only accepts and hands over.  An idle worker waits on
 * its own semaphore in a stack of idle workers: the acceptor pops the one
 * that went idle last (its stack still warm), puts the socket in its hands
 * and posts, so exactly the worker that gets the socket wakes, and it wakes
 * without retaking a lock.  (A shared condition variable woke a worker that
 * often found the socket already taken by one just finishing, and both then
 * fought for the mutex: two to four extra context switches per connection.)
 * With no worker idle, sockets wait in a bounded queue, answered "503
 * overloaded" when full, so that a flood costs a refusal rather than
 * memory; a worker finishing a connection takes from the queue before it
 * goes idle.  Workers start at `workers`; when sockets wait the pool grows,
 * up to `max_workers`, and a worker idle for POOL_SHRINK_MS above the base
 * count leaves (the stack order leaves the longest idle at the bottom, where
 * their timeouts run out).  Stacks are small: a worker needs little more
 * than its connection, which lives on the heap.
 *
 * The configuration is a refcounted snapshot: a connection takes a
 * reference when it starts and keeps its snapshot to the end, a reload
 * swaps the pointer.  Signals are taken synchronously (sigwait) by the main
 * thread, so no handler ever runs inside a worker.
 */
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define WORKER_STACK   (256 * 1024)
#define POOL_SHRINK_MS 30000
#define ACCEPT_POLL_MS 250 /* the acceptor looks at the queue at least this often */
#define BACKOFF_MAX_MS 1000

struct queued {
    int fd;                       /* -1: no socket, the server is stopping */
    struct sockaddr_storage peer; /* from accept: no getpeername per connection */
    int64_t since;                /* when it was queued */
};

/* A waiting worker, on its own stack; linked into the idle stack under mu. */
struct idler {
    sem_t wake;
    struct queued job;
    bool handed; /* popped by the acceptor (or stop): a post is on its way */
    struct idler *up, *down;
};

struct server {
    const char *config_path;
    struct trust_store *trust; /* trust on first use: kept across reloads */
    struct admin *admin;
    struct snapshot_holder cfg;
    int lfd;
    int reserve;            /* a descriptor given up to answer a client when none is left */
    int64_t shed_logged;    /* rate limit for the log line of refusals */
    unsigned shed_unlogged; /* refusals since that line */
    pthread_t acceptor;

    pthread_mutex_t mu; /* the queue, the idle stack and the pool counters */
    pthread_cond_t idle_change;
    struct queued *q;
    size_t qcap, qhead, qlen;
    struct idler *idle_top; /* the worker that went idle last */
    unsigned total, starting, busy, base, max;
    unsigned queue_wait_ms; /* queue_timeout: longest a socket waits for a worker */
    bool stopping;
};

struct snapshot *server_snapshot(struct server *s)
{
    return holder_acquire(&s->cfg);
}

unsigned server_generation(struct server *s)
{
    return holder_generation(&s->cfg);
}

struct trust_store *server_trust(struct server *s)
{
    return s->trust;
}

bool server_stopping(struct server *s)
{
    pthread_mutex_lock(&s->mu);
    bool stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return stopping;
}

void server_gauges(struct server *s, struct metrics_gauges *g)
{
    pthread_mutex_lock(&s->mu);
    g->queue = (unsigned)s->qlen;
    g->busy = s->busy;
    g->total = s->total;
    pthread_mutex_unlock(&s->mu);
    struct snapshot *snap = server_snapshot(s);
    memset(&g->cache, 0, sizeof(g->cache));
    if (snap->ic != NULL)
        tls_server_stats(snap->ic->tls_server, &g->cache);
    snapshot_unref(snap);
}

/* ---- pool ------------------------------------------------------------------- */

static void *worker_main(void *arg);

/* Called with s->mu held. */
static void spawn_worker(struct server *s)
{
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, WORKER_STACK);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &a, worker_main, s);
    pthread_attr_destroy(&a);
    if (rc != 0) {
        log_msg(LOGL_ERROR, "server", "cannot start a worker thread: %s", strerror(rc));
        return;
    }
    s->total++;
    s->starting++;
}

/* Called with s->mu held: the idle stack. */
static void idle_push(struct server *s, struct idler *me)
{
    me->handed = false;
    me->up = NULL;
    me->down = s->idle_top;
    if (s->idle_top != NULL)
        s->idle_top->up = me;
    s->idle_top = me;
}

static void idle_remove(struct server *s, struct idler *w)
{
    if (w->up != NULL)
        w->up->down = w->down;
    else
        s->idle_top = w->down;
    if (w->down != NULL)
        w->down->up = w->up;
}

/* Pop the worker that went idle last and give it job; the caller posts
 * its semaphore once mu is released.  NULL when none is idle. */
static struct idler *idle_hand(struct server *s, struct queued job)
{
    struct idler *w = s->idle_top;
    if (w != NULL) {
        idle_remove(s, w);
        w->job = job;
        w->handed = true;
    }
    return w;
}

/* Called with s->mu held, and returns with it held: the next socket for this
 * worker (fd -1 when it is to leave: stopping, or idle too long above the
 * base size).  Sleeps on me->wake with mu released. */
static struct queued next_job(struct server *s, struct idler *me)
{
    struct timespec dl = deadline_in(POOL_SHRINK_MS);
    for (;;) {
        if (s->qlen > 0) {
            struct queued j = s->q[s->qhead];
            s->qhead = (s->qhead + 1) % s->qcap;
            s->qlen--;
            return j;
        }
        if (s->stopping)
            return (struct queued){.fd = -1};
        idle_push(s, me);
        pthread_mutex_unlock(&s->mu);
        int rc;
        while ((rc = sem_clockwait(&me->wake, CLOCK_MONOTONIC, &dl)) != 0 && errno == EINTR)
            ;
        pthread_mutex_lock(&s->mu);
        if (me->handed) {
            /* the post may still be on its way (a timeout raced the hand-over):
             * it follows the acceptor's unlock with nothing in between */
            while (rc != 0 && (rc = sem_wait(&me->wake)) != 0 && errno == EINTR)
                ;
            return me->job;
        }
        idle_remove(s, me); /* timed out, nobody took us */
        if (s->total > s->base)
            return (struct queued){.fd = -1};
        dl = deadline_in(POOL_SHRINK_MS);
    }
}

static void *worker_main(void *arg)
{
    struct server *s = arg;
    struct relay_pipes pipes = RELAY_PIPES_INIT;
    struct idler me = {0};
    if (sem_init(&me.wake, 0, 0) != 0) {
        log_msg(LOGL_ERROR, "server", "cannot start a worker: sem_init: %s", strerror(errno));
        pthread_mutex_lock(&s->mu);
        s->starting--;
        s->total--;
        pthread_cond_broadcast(&s->idle_change);
        pthread_mutex_unlock(&s->mu);
        return NULL;
    }
    pthread_mutex_lock(&s->mu);
    s->starting--;
    for (;;) {
        struct queued j = next_job(s, &me);
        if (j.fd < 0)
            break;
        s->busy++;
        pthread_mutex_unlock(&s->mu);
        conn_serve(s, j.fd, &j.peer, &pipes);
        pthread_mutex_lock(&s->mu);
        s->busy--;
    }
    s->total--;
    pthread_cond_broadcast(&s->idle_change);
    pthread_mutex_unlock(&s->mu);
    sem_destroy(&me.wake);
    relay_pipes_close(&pipes);
    return NULL;
}

static void reject(int fd, const char *why)
{
    char junk[4096];
    /* read what already arrived, so that closing does not reset the 503 away */
    while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
        ;
    respond_error(fd, &ERR_OVERLOADED, why, NULL);
    shutdown(fd, SHUT_WR);
    close(fd);
}

/* One log line a second at most about refused connections, however many. */
static void note_refused(struct server *s, const char *why)
{
    int64_t now = now_ms();
    s->shed_unlogged++;
    if (now - s->shed_logged < 1000)
        return;
    log_msg(LOGL_WARN, "connect", "refused %u connection%s with 503: %s", s->shed_unlogged,
            s->shed_unlogged == 1 ? "" : "s", why);
    s->shed_logged = now;
    s->shed_unlogged = 0;
}

static void enqueue(struct server *s, int fd, const struct sockaddr_storage *peer)
{
    pthread_mutex_lock(&s->mu);
    struct idler *w = s->stopping ? NULL : idle_hand(s, (struct queued){fd, *peer, 0});
    if (w != NULL) {
        pthread_mutex_unlock(&s->mu);
        sem_post(&w->wake); /* cannot fail: the count is 0 or 1 */
        return;
    }
    if (s->qlen == s->qcap || s->stopping) {
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        metrics_refused(stopping ? REFUSED_STOPPING : REFUSED_QUEUE_FULL);
        note_refused(s, stopping ? "shutting down" : "the queue is full");
        reject(fd, stopping ? "egressd is shutting down" : "too many connections waiting; retry");
        return;
    }
    s->q[(s->qhead + s->qlen) % s->qcap] = (struct queued){fd, *peer, now_ms()};
    s->qlen++;
    if (s->starting < s->qlen && s->total < s->max)
        spawn_worker(s);
    pthread_mutex_unlock(&s->mu);
}

/* A socket that has waited queue_timeout for a worker gets its 503 now:
 * past capacity every client is answered within a second or two, instead
 * of waiting for its own timeout behind workers that hold long tunnels. */
static void reap_queue(struct server *s)
{
    int64_t now = now_ms();
    for (;;) {
        pthread_mutex_lock(&s->mu);
        if (s->qlen == 0 || now - s->q[s->qhead].since < s->queue_wait_ms) {
            pthread_mutex_unlock(&s->mu);
            return;
        }
        int fd = s->q[s->qhead].fd;
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
        pthread_mutex_unlock(&s->mu);
        metrics_refused(REFUSED_BUSY);
        note_refused(s, "every worker is busy");
        reject(fd, "every worker is busy; retry");
    }
}

/* Out of descriptors, accept fails while clients wait in the kernel's
 * queue until their own timeouts.  Giving up the reserve descriptor for a
 * moment lets one of them in to hear 503; true when one was answered. */
static bool shed_one(struct server *s)
{
    if (s->reserve < 0 && (s->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        return false;
    close(s->reserve);
    s->reserve = -1;
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        metrics_refused(REFUSED_DESCRIPTORS);
        note_refused(s, "out of file descriptors");
        reject(fd, "egressd is out of file descriptors; retry");
    }
    s->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC); /* -1: tried again next time */
    return fd >= 0;
}

/* ---- acceptor --------------------------------------------------------------- */

static bool accept_error_is_transient(int e)
{
    return e == EINTR || e == EAGAIN || e == EWOULDBLOCK || e == ECONNABORTED || e == EPROTO ||
           e == EPERM; /* a firewall said no to this one peer */
}

/* The acceptor blocks in accept(2) itself, one syscall per connection
 * whether or not one is waiting; SO_RCVTIMEO bounds the wait, and stop()
 * shuts the listener down, which wakes it at once.  Without both, it polls. */
static bool accept_blocking(int lfd)
{
    struct timeval tv = {ACCEPT_POLL_MS / 1000, (ACCEPT_POLL_MS % 1000) * 1000};
    int fl = fcntl(lfd, F_GETFL);
    if (setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 || fl < 0 ||
        fcntl(lfd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        log_msg(LOGL_WARN, "server", "accepting with poll: cannot set an accept timeout: %s",
                strerror(errno));
        if (fl >= 0)
            (void)fcntl(lfd, F_SETFL, fl | O_NONBLOCK);
        return false;
    }
    return true;
}

static void *acceptor_main(void *arg)
{
    struct server *s = arg;
    int backoff = 0;
    bool blocking = accept_blocking(s->lfd);
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(s->lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int e = errno;
        reap_queue(s);
        if (fd >= 0) {
            backoff = 0;
            enqueue(s, fd, &peer);
            continue;
        }
        if (server_stopping(s))
            break; /* the listener was shut down under us */
        if (e == EAGAIN || e == EWOULDBLOCK) {
            if (!blocking)
                (void)fd_wait(s->lfd, POLLIN, ACCEPT_POLL_MS);
            continue;
        }
        if (accept_error_is_transient(e))
            continue;
        if ((e == EMFILE || e == ENFILE) && shed_one(s))
            continue; /* answered; the next one may find a descriptor again */
        /* EMFILE, ENFILE, ENOBUFS, ENOMEM: wait for resources, never give up */
        backoff = backoff ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2) : 10;
        log_msg(LOGL_ERROR, "server", "accept failed: %s; retrying in %d ms", strerror(e), backoff);
        usleep((useconds_t)backoff * 1000);
    }
    return NULL;
}

int listen_socket(const struct sockaddr_storage *addr, socklen_t len, const char *text,
                  const char *what)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    /* SO_REUSEADDR lets a restart bind its port while old connections sit in
     * TIME_WAIT; with port 0 there is nothing to rebind, and Linux may then
     * hand out a port another SO_REUSEADDR listener still holds */
    bool fixed_port = addr->ss_family != AF_UNIX &&
                      ((const struct sockaddr_in *)addr)->sin_port != 0; /* same offset in v6 */
    if (fd < 0 ||
        (fixed_port && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) ||
        bind(fd, (const struct sockaddr *)addr, len) != 0 || listen(fd, SOMAXCONN) != 0) {
        log_msg(LOGL_ERROR, "server", "cannot listen on %s (%s): %s", text, what, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char shown[128];
    snprintf(shown, sizeof(shown), "%s", text);
    if (addr->ss_family != AF_UNIX) {
        set_nodelay(fd); /* accepted sockets inherit it: one syscall less per connection */
        struct sockaddr_storage bound;
        socklen_t blen = sizeof(bound);
        if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
            format_sockaddr((struct sockaddr *)&bound, shown, sizeof(shown));
    }
    if (strcmp(what, "proxy") == 0)
        log_msg(LOGL_INFO, "server", "listening on %s", shown);
    else
        log_msg(LOGL_INFO, "server", "%s endpoint on %s", what, shown);
    return fd;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    /* each tunnel holds two sockets and up to two pipes */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_msg(LOGL_WARN, "server", "cannot raise the open file limit: %s", strerror(errno));
    }
}

struct server *server_start(struct snapshot *first, const char *config_path)
{
    const struct proxy_settings *set = policy_settings(first->pol);
    struct server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->q = calloc(set->queue, sizeof(*s->q));
    s->trust = trust_store_new();
    s->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    s->lfd = s->q && s->trust && s->reserve >= 0
                 ? listen_socket(&set->listen_addr, set->listen_len, set->listen, "proxy")
                 : -1;
    if (s->lfd < 0) {
        trust_store_free(s->trust);
        if (s->reserve >= 0)
            close(s->reserve);
        free(s->q);
        free(s);
        return NULL;
    }
    raise_fd_limit();
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->idle_change, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);
    s->config_path = config_path;
    holder_init(&s->cfg, first);
    s->qcap = set->queue;
    s->base = set->workers;
    s->max = set->max_workers;
    s->queue_wait_ms = set->queue_timeout_ms;
    pthread_mutex_lock(&s->mu);
    for (unsigned i = 0; i < s->base; i++)
        spawn_worker(s);
    pthread_mutex_unlock(&s->mu);
    s->admin = admin_start(s, set);
    if (set->admin_len > 0 && s->admin == NULL)
        log_msg(LOGL_ERROR, "server",
                "the admin endpoint did not start; the proxy runs without it");
    int rc = pthread_create(&s->acceptor, NULL, acceptor_main, s);
    if (rc != 0) {
        log_msg(LOGL_ERROR, "server", "cannot start the acceptor: %s", strerror(rc));
        return NULL; /* the process exits: nothing to tidy for */
    }
    return s;
}

static void server_free(struct server *s)
{
    pthread_cond_destroy(&s->idle_change);
    pthread_mutex_destroy(&s->mu);
    snapshot_unref(atomic_load(&s->cfg.cur));
    trust_store_free(s->trust);
    if (s->reserve >= 0)
        close(s->reserve);
    free(s->q);
    free(s);
}

/* ---- reload and stop ---------------------------------------------------------- */

static void report_to_log(void *ctx, const char *file, int line, const char *msg)
{
    (void)ctx;
    if (line > 0)
        log_msg(LOGL_ERROR, "config", "%s:%d: %s", file, line, msg);
    else
        log_msg(LOGL_ERROR, "config", "%s: %s", file, msg);
}

static void reload(struct server *s)
{
    char err[400];
    struct policy *p = policy_load_file(s->config_path, report_to_log, NULL);
    struct snapshot *now = server_snapshot(s), *next = NULL;
    if (p != NULL && (next = snapshot_new(p, now, err, sizeof(err))) == NULL) {
        log_msg(LOGL_ERROR, "config", "%s", err);
        policy_unref(p);
    }
    if (next == NULL) {
        snapshot_unref(now);
        metrics_reload(false);
        log_msg(LOGL_ERROR, "config", "reload failed; the running configuration stays in force");
        return;
    }
    const struct proxy_settings *was = policy_settings(now->pol), *set = policy_settings(p);
    if (strcmp(was->listen, set->listen) != 0)
        log_msg(LOGL_WARN, "config", "listen changed to %s: takes effect at restart; still on %s",
                set->listen, was->listen);
    if (was->queue != set->queue)
        log_msg(LOGL_WARN, "config", "queue size changes take effect at restart");
    if (strcmp(was->admin, set->admin) != 0)
        log_msg(LOGL_WARN, "config", "admin address changes take effect at restart");
    snapshot_unref(now);
    pthread_mutex_lock(&s->mu);
    s->base = set->workers;
    s->max = set->max_workers;
    s->queue_wait_ms = set->queue_timeout_ms;
    pthread_mutex_unlock(&s->mu);
    log_configure(set->log_format, set->log_level);
    holder_swap(&s->cfg, next);
    metrics_reload(true);
    log_msg(LOGL_INFO, "config", "reloaded %s: %zu rules, %zu routes", s->config_path,
            policy_rule_count(p), policy_route_count(p));
}

static int stop(struct server *s)
{
    struct snapshot *snap = server_snapshot(s);
    unsigned timeout_ms = policy_settings(snap->pol)->shutdown_timeout_ms;
    snapshot_unref(snap);
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    struct idler *w, *woken = NULL;
    while ((w = idle_hand(s, (struct queued){.fd = -1})) != NULL) {
        w->down = woken; /* off the stack: reuse the link for the list to post */
        woken = w;
    }
    pthread_mutex_unlock(&s->mu);
    for (w = woken; w != NULL;) {
        struct idler *next = w->down; /* read before the post: w may be gone after */
        sem_post(&w->wake);
        w = next;
    }
    shutdown(s->lfd, SHUT_RDWR); /* new connections are refused from now on */
    pthread_join(s->acceptor, NULL);
    close(s->lfd);
    admin_stop(s->admin);
    log_msg(LOGL_INFO, "server", "stopping: no new connections; waiting up to %u ms", timeout_ms);

    struct timespec dl = deadline_in((unsigned)timeout_ms);
    pthread_mutex_lock(&s->mu);
    while (s->qlen > 0) { /* accepted but never served: tell them */
        int fd = s->q[s->qhead].fd;
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
        reject(fd, "egressd is shutting down");
    }
    /* idle workers leave at once; busy ones when their connection ends */
    while (s->total > 0 && pthread_cond_timedwait(&s->idle_change, &s->mu, &dl) != ETIMEDOUT)
        ;
    unsigned busy = s->busy, total = s->total;
    pthread_mutex_unlock(&s->mu);
    if (busy > 0) {
        log_msg(LOGL_WARN, "server", "exiting with %u connections still open", busy);
        return 0; /* workers still use s: the process exit reclaims it */
    }
    if (total == 0)
        server_free(s);
    log_msg(LOGL_INFO, "server", "stopped");
    return 0;
}

int server_run(struct server *s)
{
    sigset_t set;
    unsigned watchdog_ms = notify_watchdog_ms();
    /* a ping at half the interval; without a watchdog, wake once a minute anyway */
    struct timespec tick = {watchdog_ms ? watchdog_ms / 2000 : 60,
                            watchdog_ms ? (long)(watchdog_ms / 2 % 1000) * 1000000 : 0};
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    notify_ready("serving");
    for (;;) {
        int sig = sigtimedwait(&set, NULL, &tick);
        if (watchdog_ms)
            notify_watchdog();
        if (sig < 0)
            continue; /* the tick, or EINTR */
        if (sig == SIGHUP) {
            notify_reloading();
            reload(s);
            notify_ready("serving");
        } else {
            notify_stopping();
            return stop(s);
        }
    }
}
