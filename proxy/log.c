/*
 * log.c - one structured line per event on stderr (journald keeps it).
 *
 * Each line is built in one buffer and written with a single write(2),
 * so lines from different workers never interleave.  JSON lines are one
 * object per line; text lines are key=value pairs for people reading a
 * terminal.  Format and level are the only mutable state: atomics, set at
 * start and on reload.
 */
#include "proxy.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096
#define FIELD_MAX    1024 /* one value, escaped */

static atomic_int log_format_now = LOGF_JSON;
static atomic_int log_level_now = LOGL_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_configure(enum log_format fmt, enum log_level level)
{
    atomic_store(&log_format_now, (int)fmt);
    atomic_store(&log_level_now, (int)level);
}

bool log_enabled(enum log_level level)
{
    return (int)level >= atomic_load_explicit(&log_level_now, memory_order_relaxed);
}

/* A line is built in a heap buffer, not on the worker's stack: a worker
 * that logged once would otherwise keep those stack pages resident for as
 * long as it lives, and 10,000 idle tunnels are 10,000 stacks.  (malloc
 * keeps the freed buffer in the thread's arena for the next line.) */
struct line {
    char *buf;
    size_t cap, n;
    bool json;
    char fallback[256]; /* when malloc fails: a shorter line, never none */
};

static void put_raw(struct line *l, const char *p, size_t n)
{
    size_t room = l->cap - 1 - l->n; /* one byte kept for the closing brace */
    n = n < room ? n : room;
    memcpy(l->buf + l->n, p, n);
    l->n += n;
}

static void put_cstr(struct line *l, const char *s)
{
    put_raw(l, s, strlen(s));
}

static void put_str(struct line *l, const char *key, const char *v)
{
    if (v == NULL)
        return;
    bool quote = l->json || strpbrk(v, " \"=") != NULL || *v == '\0';
    put_cstr(l, l->json ? ",\"" : " ");
    put_cstr(l, key);
    put_cstr(l, l->json ? "\":" : "=");
    if (quote)
        put_raw(l, "\"", 1);
    size_t room = l->cap - 1 - l->n, cap = room < FIELD_MAX ? room : FIELD_MAX;
    if (cap > 1)
        l->n += json_escape(l->buf + l->n, cap, v);
    if (quote)
        put_raw(l, "\"", 1);
}

static void put_num(struct line *l, const char *key, long long v)
{
    char digits[24];
    size_t i = sizeof(digits);
    if (v < 0)
        return;
    do
        digits[--i] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    put_cstr(l, l->json ? ",\"" : " ");
    put_cstr(l, key);
    put_cstr(l, l->json ? "\":" : "=");
    put_raw(l, digits + i, sizeof(digits) - i);
}

static void begin(struct line *l, enum log_level level, const char *event)
{
    struct timeval tv;
    struct tm tm;
    char ts[40];
    l->buf = malloc(LOG_LINE_MAX);
    l->cap = l->buf ? LOG_LINE_MAX : sizeof(l->fallback);
    l->buf = l->buf ? l->buf : l->fallback;
    l->n = 0;
    l->json = atomic_load_explicit(&log_format_now, memory_order_relaxed) == LOGF_JSON;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t t = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    ts[t++] = '.';
    for (long ms = (long)tv.tv_usec / 1000, d = 100; d > 0; ms %= d, d /= 10)
        ts[t++] = (char)('0' + ms / d);
    ts[t++] = 'Z';
    if (l->json) {
        put_cstr(l, "{\"ts\":\"");
        put_raw(l, ts, t);
        put_cstr(l, "\",\"level\":\"");
        put_cstr(l, level_names[level]);
        put_cstr(l, "\",\"event\":\"");
        put_cstr(l, event);
        put_raw(l, "\"", 1);
    } else {
        put_raw(l, ts, t);
        put_raw(l, " ", 1);
        put_cstr(l, level_names[level]);
        put_raw(l, " ", 1);
        put_cstr(l, event);
    }
}

static void finish(struct line *l)
{
    if (l->n > l->cap - 3)
        l->n = l->cap - 3;
    if (l->json)
        l->buf[l->n++] = '}';
    l->buf[l->n++] = '\n';
    /* stderr may be a pipe or journald's socket: one write, retried on EINTR */
    ssize_t w;
    do
        w = write(STDERR_FILENO, l->buf, l->n);
    while (w < 0 && errno == EINTR);
    if (l->buf != l->fallback)
        free(l->buf);
}

void log_event(enum log_level level, const struct log_fields *f)
{
    struct line l;
    if (!log_enabled(level))
        return;
    begin(&l, level, f->event);
    put_str(&l, "src", f->src);
    put_str(&l, "host", f->host);
    put_num(&l, "port", f->port);
    put_str(&l, "action", f->action);
    put_str(&l, "method", f->method);
    put_str(&l, "path", f->path);
    put_str(&l, "rule", f->rule);
    put_str(&l, "secrets", f->secrets);
    put_str(&l, "reason", f->reason);
    put_str(&l, "detail", f->detail);
    put_str(&l, "denial", f->denial);
    put_num(&l, "pid", f->pid);
    put_str(&l, "binary", f->binary);
    put_str(&l, "route", f->route);
    put_str(&l, "protocol", f->protocol);
    put_str(&l, "model", f->model);
    put_num(&l, "attempt", f->attempt);
    put_str(&l, "next_route", f->next_route);
    put_num(&l, "status", f->status);
    put_num(&l, "bytes_up", f->bytes_up);
    put_num(&l, "bytes_down", f->bytes_down);
    put_num(&l, "duration_ms", f->duration_ms);
    put_num(&l, "tokens_in", f->tokens_in);
    put_num(&l, "tokens_out", f->tokens_out);
    put_num(&l, "attempts", f->attempts);
    finish(&l);
}

void log_policy_warnings(const struct policy *p, const char *file)
{
    for (size_t i = 0; i < policy_warning_count(p); i++) {
        int line;
        const char *msg = policy_warning(p, i, &line);
        log_msg(LOGL_WARN, "config", "%s:%d: warning: %s", file, line, msg);
    }
}

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
    struct line l;
    char msg[1024];
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    begin(&l, level, event);
    put_str(&l, "msg", msg);
    finish(&l);
}
