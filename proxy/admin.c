/*
 * admin.c - the admin endpoint: GET /metrics (Prometheus text),
 * GET /healthz, the denial record (GET /denials, POST /denials/clear) and
 * the sandbox's access requests (GET /requests), on the `admin` address
 * only (TCP, or a Unix socket that the sandbox cannot reach:
 * `admin = unix:/run/egressd/admin.sock`).
 *
 * One thread serves every admin connection with one poll loop, each
 * connection a small state machine (reading its head, writing its answer)
 * with a deadline for the whole exchange.  Each poll round accepts every
 * waiting connection (up to half the table).  The table is bounded; when
 * it is full, a new connection evicts the one with least to lose: the
 * oldest that has sent nothing, else the oldest still sending its head,
 * else the oldest being answered.  So sockets that connect and wait can
 * neither lock a client out nor cut off one already talking.  Nothing
 * here can hold up the proxy.
 */
#include "proxy.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define ADMIN_IO_MS   2000 /* a whole exchange: head in, answer out */
#define ADMIN_POLL_MS 500  /* how often stop and deadlines are looked at */
#define ADMIN_CONNS   64
#define ADMIN_ACCEPTS                                                                              \
    (ADMIN_CONNS / 2) /* per round: one round's accepts never evict each other                     \
                       */
#define ADMIN_HEAD  4096
#define METRICS_MAX (256 * 1024)

struct admin_conn {
    int fd; /* -1: a free slot */
    int64_t since;
    uint64_t seq; /* order of arrival */
    size_t len;
    char head[ADMIN_HEAD];
    char *out; /* the answer, once the head is in */
    size_t out_len, out_off;
};

struct admin {
    struct runtime *rt;
    struct pool *pool;
    int fd;
    char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* "" for TCP */
    pthread_t thread;
    atomic_bool stop;
    uint64_t accepted;
    struct admin_conn conns[ADMIN_CONNS];
};

/* The whole answer in one buffer: the caller owns it. */
static char *answer(int status, const char *reason, const char *ctype, const char *body, size_t len,
                    size_t *out_len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, reason, ctype, len);
    char *out = malloc((size_t)n + len);
    if (out != NULL) {
        memcpy(out, head, (size_t)n);
        memcpy(out + n, body, len);
        *out_len = (size_t)n + len;
    }
    return out;
}

static char *metrics_answer(struct admin *a, size_t *out_len)
{
    char *text = malloc(METRICS_MAX);
    struct metrics_gauges g;
    if (text == NULL)
        return answer(503, "Service Unavailable", "text/plain", "out of memory\n", 14, out_len);
    pool_gauges(a->pool, &g);
    struct snapshot *snap = holder_acquire(&a->rt->cfg);
    memset(&g.cache, 0, sizeof(g.cache));
    if (snap->ic != NULL)
        tls_server_stats(snap->ic->tls_server, &g.cache);
    g.n_budgets = budget_gauges(a->rt->budgets, snap->pol, now_ms(), g.budgets,
                                sizeof(g.budgets) / sizeof(g.budgets[0]));
    size_t n = metrics_render(text, METRICS_MAX, &g); /* budget names are the snapshot's */
    snapshot_unref(snap);
    char *out = answer(200, "OK", "text/plain; version=0.0.4", text, n, out_len);
    free(text);
    return out;
}

/* A JSON document from the record's owner: denials (else access requests). */
static char *json_answer(struct admin *a, bool denials, size_t *out_len)
{
    size_t len = 0;
    char *json =
        denials ? denials_json(a->rt->denials, &len) : access_log_json(a->rt->access, &len);
    char *out = json ? answer(200, "OK", "application/json", json, len, out_len) : NULL;
    free(json);
    return out ? out
               : answer(503, "Service Unavailable", "text/plain", "out of memory\n", 14, out_len);
}

static char *clear_answer(struct admin *a, size_t *out_len)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"cleared\":%zu}\n", denials_clear(a->rt->denials));
    return answer(200, "OK", "application/json", body, (size_t)n, out_len);
}

static bool target_is(const struct http_msg *m, const char *path)
{
    return m->target_len == strlen(path) && memcmp(m->target, path, m->target_len) == 0;
}

/* The answer to a whole head. */
static char *respond(struct admin *a, struct admin_conn *c, size_t *out_len)
{
    struct http_msg m;
    const char *why;
    if (http_parse_request(c->head, c->len, &m, &why) != HTTP_OK)
        return answer(400, "Bad Request", "text/plain", "bad request\n", 12, out_len);
    bool get = http_method_is(&m, "GET"), post = http_method_is(&m, "POST");
    if (get && target_is(&m, "/metrics"))
        return metrics_answer(a, out_len);
    if (get && target_is(&m, "/healthz")) {
        bool up = !atomic_load(&a->rt->stopping);
        return answer(up ? 200 : 503, up ? "OK" : "Service Unavailable", "text/plain",
                      up ? "ok\n" : "stopping\n", up ? 3 : 9, out_len);
    }
    if (get && target_is(&m, "/denials"))
        return json_answer(a, true, out_len);
    if (post && target_is(&m, "/denials/clear"))
        return clear_answer(a, out_len);
    if (get && target_is(&m, "/requests"))
        return json_answer(a, false, out_len);
    static const char usage[] =
        "GET /metrics, /healthz, /denials or /requests; POST /denials/clear\n";
    return answer(404, "Not Found", "text/plain", usage, sizeof(usage) - 1, out_len);
}

static void conn_drop(struct admin_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->out);
    c->fd = -1;
    c->out = NULL;
}

/* How much a connection has to lose: 0 sent nothing yet, 1 is sending its
 * head, 2 is being answered. */
static int progress(const struct admin_conn *c)
{
    return c->out != NULL ? 2 : c->len > 0 ? 1 : 0;
}

/* A slot for a new connection: a free one, or the one with least to lose
 * (the oldest of those). */
static struct admin_conn *slot_for_new(struct admin *a)
{
    struct admin_conn *victim = &a->conns[0];
    for (size_t i = 0; i < ADMIN_CONNS; i++) {
        struct admin_conn *c = &a->conns[i];
        if (c->fd < 0)
            return c;
        int pc = progress(c), pv = progress(victim);
        if (pc < pv || (pc == pv && c->seq < victim->seq))
            victim = c;
    }
    conn_drop(victim);
    return victim;
}

/* Every connection waiting, up to ADMIN_ACCEPTS. */
static void accept_new(struct admin *a)
{
    for (int n = 0; n < ADMIN_ACCEPTS; n++) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN: none left; EMFILE and friends: the next round tries again */
        struct admin_conn *c = slot_for_new(a);
        c->fd = fd;
        c->since = now_ms();
        c->seq = a->accepted++;
        c->len = c->out_len = c->out_off = 0;
    }
}

/* Read what came, or write what is due; false when the connection is done. */
static bool conn_step(struct admin *a, struct admin_conn *c, short revents)
{
    if (c->out == NULL && (revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = recv(c->fd, c->head + c->len, sizeof(c->head) - c->len, MSG_DONTWAIT);
        if (n <= 0)
            return n < 0 && (errno == EAGAIN || errno == EINTR);
        c->len += (size_t)n;
        if (http_head_length(c->head, c->len) == 0 && c->len < sizeof(c->head))
            return true;
        if ((c->out = respond(a, c, &c->out_len)) == NULL)
            return false;
    }
    if (c->out != NULL) {
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        c->out_off += (size_t)n;
        if (c->out_off == c->out_len) {
            shutdown(c->fd, SHUT_WR);
            return false;
        }
    }
    return true;
}

static void *admin_main(void *arg)
{
    struct admin *a = arg;
    struct pollfd p[ADMIN_CONNS + 1];
    while (!atomic_load(&a->stop)) {
        p[0] = (struct pollfd){a->fd, POLLIN, 0};
        for (size_t i = 0; i < ADMIN_CONNS; i++) {
            struct admin_conn *c = &a->conns[i];
            p[i + 1] = (struct pollfd){c->fd, c->out ? POLLOUT : POLLIN, 0};
        }
        if (poll(p, ADMIN_CONNS + 1, ADMIN_POLL_MS) < 0 && errno != EINTR) {
            usleep(100000);
            continue;
        }
        int64_t now = now_ms();
        for (size_t i = 0; i < ADMIN_CONNS; i++) {
            struct admin_conn *c = &a->conns[i];
            if (c->fd < 0)
                continue;
            if ((p[i + 1].revents && !conn_step(a, c, p[i + 1].revents)) ||
                now - c->since > ADMIN_IO_MS)
                conn_drop(c);
        }
        if (p[0].revents & POLLIN)
            accept_new(a);
    }
    for (size_t i = 0; i < ADMIN_CONNS; i++)
        conn_drop(&a->conns[i]);
    return NULL;
}

/* A Unix socket's path is the operator's: a socket left by an earlier run
 * is replaced, anything else there is not touched. */
static void remove_stale_socket(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
}

struct admin *admin_start(struct runtime *rt, struct pool *pool, const struct proxy_settings *set)
{
    if (set->admin_len == 0)
        return NULL;
    struct admin *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->rt = rt;
    a->pool = pool;
    for (size_t i = 0; i < ADMIN_CONNS; i++)
        a->conns[i].fd = -1;
    if (set->admin_addr.ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&set->admin_addr;
        snprintf(a->unix_path, sizeof(a->unix_path), "%s", un->sun_path);
        remove_stale_socket(a->unix_path);
    }
    a->fd = listen_socket(&set->admin_addr, set->admin_len, set->admin, "admin"); /* non-blocking */
    if (a->fd < 0 || pthread_create(&a->thread, NULL, admin_main, a) != 0) {
        if (a->fd >= 0)
            close(a->fd);
        free(a);
        return NULL;
    }
    return a;
}

void admin_stop(struct admin *a)
{
    if (a == NULL)
        return;
    atomic_store(&a->stop, true);
    pthread_join(a->thread, NULL);
    close(a->fd);
    if (a->unix_path[0] != '\0')
        unlink(a->unix_path);
    free(a);
}
