/*
 * admin.c - the admin endpoint: GET /metrics (Prometheus text) and
 * GET /healthz, on the `admin` address only.
 *
 * One thread, one connection at a time, every read and write bounded: a
 * scraper is expected every few seconds, not a crowd, and nothing it does
 * can hold up the proxy.  The listening address is fixed at start.
 */
#include "proxy.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ADMIN_IO_MS   2000
#define ADMIN_POLL_MS 500
#define METRICS_MAX   (256 * 1024)

struct admin {
    struct server *srv;
    int fd;
    pthread_t thread;
    atomic_bool stop;
};

static void answer(int fd, int status, const char *reason, const char *ctype, const char *body,
                   size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, reason, ctype, len);
    int64_t deadline = now_ms() + ADMIN_IO_MS;
    if (fd_write_all(fd, head, (size_t)n, deadline) == IO_OK)
        (void)fd_write_all(fd, body, len, deadline);
}

static void serve_one(struct admin *a, int fd)
{
    char buf[4096];
    size_t len = 0;
    struct http_msg m;
    const char *why;
    struct stream *st = stream_plain(fd);
    enum head_status hs =
        st ? http_read_head(st, buf, sizeof(buf), &len, now_ms() + ADMIN_IO_MS) : HEAD_ERROR;
    stream_free(st);
    if (hs != HEAD_OK || http_parse_request(buf, len, &m, &why) != HTTP_OK) {
        answer(fd, 400, "Bad Request", "text/plain", "bad request\n", 12);
        return;
    }
    bool get = m.method_len == 3 && memcmp(m.method, "GET", 3) == 0;
    bool metrics = m.target_len == 8 && memcmp(m.target, "/metrics", 8) == 0;
    bool health = m.target_len == 8 && memcmp(m.target, "/healthz", 8) == 0;
    if (get && metrics) {
        char *out = malloc(METRICS_MAX);
        struct metrics_gauges g;
        if (out == NULL) {
            answer(fd, 503, "Service Unavailable", "text/plain", "out of memory\n", 14);
            return;
        }
        server_gauges(a->srv, &g);
        size_t n = metrics_render(out, METRICS_MAX, &g);
        answer(fd, 200, "OK", "text/plain; version=0.0.4", out, n);
        free(out);
    } else if (get && health) {
        bool up = !server_stopping(a->srv);
        answer(fd, up ? 200 : 503, up ? "OK" : "Service Unavailable", "text/plain",
               up ? "ok\n" : "stopping\n", up ? 3 : 9);
    } else {
        answer(fd, 404, "Not Found", "text/plain", "GET /metrics or /healthz\n", 25);
    }
}

static void *admin_main(void *arg)
{
    struct admin *a = arg;
    while (!atomic_load(&a->stop)) {
        if (fd_wait(a->fd, POLLIN, ADMIN_POLL_MS) <= 0)
            continue;
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                usleep(100000);
            continue;
        }
        serve_one(a, fd);
        shutdown(fd, SHUT_WR);
        close(fd);
    }
    return NULL;
}

struct admin *admin_start(struct server *srv, const struct proxy_settings *set)
{
    if (set->admin_len == 0)
        return NULL;
    struct admin *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->srv = srv;
    a->fd = listen_socket(&set->admin_addr, set->admin_len, set->admin, "admin");
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
    free(a);
}
