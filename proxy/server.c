/*
 * server.c - the listener, the acceptor thread, reloads and signals.
 *
 * The acceptor only accepts and hands over to the pool.  It blocks in
 * accept(2) with SO_RCVTIMEO as its deadline, so that four times a second
 * at least it can tell the pool to answer sockets that waited too long;
 * stopping shuts the listener down, which wakes it at once.  When
 * descriptors run out, accept fails while clients wait in the kernel's
 * queue until their own timeouts: the acceptor then closes a reserve
 * descriptor for a moment to let one in and tell it 503 (the libev/nginx
 * trick).  Signals are taken synchronously (sigwait) by the main thread, so
 * no handler ever runs inside a worker; a reload parses and checks the
 * whole file and swaps in a new snapshot, or logs why not and changes
 * nothing.
 */
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define ACCEPT_POLL_MS 250 /* the acceptor looks at the queue at least this often */
#define REAP_EVERY_MS  100
#define BACKOFF_MAX_MS 1000

struct server {
    const char *config_path;
    struct runtime *rt;
    struct pool *pool;
    int lfd;
    int reserve; /* a descriptor given up to answer a client when none is left */
    atomic_bool stopping;
    pthread_t acceptor;
};

static bool accept_error_is_transient(int e)
{
    return e == EINTR || e == EAGAIN || e == EWOULDBLOCK || e == ECONNABORTED || e == EPROTO ||
           e == EPERM; /* a firewall said no to this one peer */
}

/* The acceptor blocks in accept(2) itself, one syscall per connection
 * whether or not one is waiting; SO_RCVTIMEO bounds the wait.  Without it,
 * it polls. */
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

/* Out of descriptors: give up the reserve for a moment to let one waiting
 * client in and tell it 503; true when one was answered. */
static bool shed_one(struct server *s)
{
    if (s->reserve < 0 && (s->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        return false;
    close(s->reserve);
    s->reserve = -1;
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        pool_note_shed(s->pool);
        pool_refuse(fd, "egressd is out of file descriptors; retry");
    }
    s->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC); /* -1: tried again next time */
    return fd >= 0;
}

/* After accept failed with e: how long to wait before the next try. */
static int after_accept_error(struct server *s, int e, int backoff, bool blocking)
{
    if (e == EAGAIN || e == EWOULDBLOCK) {
        if (!blocking)
            (void)fd_wait(s->lfd, POLLIN, ACCEPT_POLL_MS);
        return 0;
    }
    if (accept_error_is_transient(e) || ((e == EMFILE || e == ENFILE) && shed_one(s)))
        return 0;
    /* ENFILE, ENOBUFS, ENOMEM, or no reserve: wait for resources, never give up */
    backoff = backoff ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2) : 10;
    log_msg(LOGL_ERROR, "server", "accept failed: %s; retrying in %d ms", strerror(e), backoff);
    usleep((useconds_t)backoff * 1000);
    return backoff;
}

static void *acceptor_main(void *arg)
{
    struct server *s = arg;
    int backoff = 0;
    int64_t reaped = 0;
    bool blocking = accept_blocking(s->lfd);
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(s->lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int e = errno;
        if (now_ms() - reaped >= REAP_EVERY_MS) { /* not once per connection: a lock each */
            pool_reap(s->pool);
            reaped = now_ms();
        }
        if (fd >= 0) {
            backoff = 0;
            pool_submit(s->pool, fd, &peer);
        } else if (atomic_load(&s->stopping)) {
            break; /* the listener was shut down under us */
        } else {
            backoff = after_accept_error(s, e, backoff, blocking);
        }
    }
    return NULL;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    /* each tunnel holds two sockets, and two pipes while it moves bytes */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_msg(LOGL_WARN, "server", "cannot raise the open file limit: %s", strerror(errno));
    }
}

struct server *server_start(struct runtime *rt, struct pool *pool, const char *config_path)
{
    struct snapshot *snap = holder_acquire(&rt->cfg);
    const struct proxy_settings *set = policy_settings(snap->pol);
    struct server *s = calloc(1, sizeof(*s));
    if (s != NULL) {
        s->rt = rt, s->pool = pool, s->config_path = config_path;
        s->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
        s->lfd = s->reserve >= 0
                     ? listen_socket(&set->listen_addr, set->listen_len, set->listen, "proxy")
                     : -1;
    }
    snapshot_unref(snap);
    if (s == NULL || s->lfd < 0) {
        if (s != NULL && s->reserve >= 0)
            close(s->reserve);
        free(s);
        return NULL;
    }
    raise_fd_limit();
    int rc = pthread_create(&s->acceptor, NULL, acceptor_main, s);
    if (rc != 0) {
        log_msg(LOGL_ERROR, "server", "cannot start the acceptor: %s", strerror(rc));
        close(s->lfd);
        close(s->reserve);
        free(s);
        return NULL;
    }
    return s;
}

static void report_to_log(void *ctx, const char *file, int line, const char *msg)
{
    (void)ctx;
    if (line > 0)
        log_msg(LOGL_ERROR, "config", "%s:%d: %s", file, line, msg);
    else
        log_msg(LOGL_ERROR, "config", "%s: %s", file, msg);
}

/* What a reload cannot change while running, said once. */
static void warn_restart_only(const struct proxy_settings *was, const struct proxy_settings *set)
{
    if (strcmp(was->listen, set->listen) != 0)
        log_msg(LOGL_WARN, "config", "listen changed to %s: takes effect at restart; still on %s",
                set->listen, was->listen);
    if (was->queue != set->queue)
        log_msg(LOGL_WARN, "config", "queue size changes take effect at restart");
    if (strcmp(was->admin, set->admin) != 0)
        log_msg(LOGL_WARN, "config", "admin address changes take effect at restart");
}

static void reload(struct server *s)
{
    char err[400];
    struct policy *p = policy_load_file(s->config_path, report_to_log, NULL);
    struct snapshot *now = holder_acquire(&s->rt->cfg), *next = NULL;
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
    const struct proxy_settings *set = policy_settings(p);
    warn_restart_only(policy_settings(now->pol), set);
    log_policy_warnings(p, s->config_path);
    snapshot_unref(now);
    struct pool_settings ps = {set->workers, set->max_workers, set->queue, set->queue_timeout_ms};
    pool_resize(s->pool, &ps);
    denials_resize(s->rt->denials, set->denial_record);
    log_configure(set->log_format, set->log_level);
    budget_registry_sync(s->rt->budgets, p,
                         now_ms()); /* a budget keeping its name keeps its usage */
    holder_swap(&s->rt->cfg, next);
    metrics_reload(true);
    log_msg(LOGL_INFO, "config", "reloaded %s: %zu rules, %zu routes", s->config_path,
            policy_rule_count(p), policy_route_count(p));
}

void server_run(struct server *s)
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
        if (sig != SIGHUP)
            return;
        notify_reloading();
        reload(s);
        notify_ready("serving");
    }
}

void server_stop(struct server *s)
{
    atomic_store(&s->stopping, true);
    shutdown(s->lfd, SHUT_RDWR); /* new connections are refused from now on */
    pthread_join(s->acceptor, NULL);
    close(s->lfd);
    if (s->reserve >= 0)
        close(s->reserve);
    free(s);
}
