/*
 * log.c - one structured line per event on stderr (journald keeps it).
 *
 * Each line is built in a local buffer and written with a single write(2),
 * so lines from different workers never interleave.  JSON lines are one
 * object per line; text lines are key=value pairs for people reading a
 * terminal.  Format and level are the only mutable state: atomics, set at
 * start and on reload.
 */
#include "proxy.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

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

struct line {
    char buf[LOG_LINE_MAX];
    size_t n;
    bool json;
};

static void put(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct line *l, const char *fmt, ...)
{
    if (l->n >= sizeof(l->buf))
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(l->buf + l->n, sizeof(l->buf) - l->n, fmt, ap);
    va_end(ap);
    if (w > 0)
        l->n += (size_t)w;
    if (l->n >= sizeof(l->buf))
        l->n = sizeof(l->buf) - 1;
}

static void put_str(struct line *l, const char *key, const char *v)
{
    char esc[1024];
    if (v == NULL)
        return;
    json_escape(esc, sizeof(esc), v);
    if (l->json)
        put(l, ",\"%s\":\"%s\"", key, esc);
    else if (strpbrk(v, " \"=") != NULL || *v == '\0')
        put(l, " %s=\"%s\"", key, esc);
    else
        put(l, " %s=%s", key, esc);
}

static void put_num(struct line *l, const char *key, long long v)
{
    if (v >= 0)
        put(l, l->json ? ",\"%s\":%lld" : " %s=%lld", key, v);
}

static void begin(struct line *l, enum log_level level, const char *event)
{
    struct timeval tv;
    struct tm tm;
    char ts[32];
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    l->n = 0;
    l->json = atomic_load_explicit(&log_format_now, memory_order_relaxed) == LOGF_JSON;
    if (l->json)
        put(l, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"event\":\"%s\"", ts,
            (long)tv.tv_usec / 1000, level_names[level], event);
    else
        put(l, "%s.%03ldZ %s %s", ts, (long)tv.tv_usec / 1000, level_names[level], event);
}

static void finish(struct line *l)
{
    if (l->n > sizeof(l->buf) - 3)
        l->n = sizeof(l->buf) - 3;
    if (l->json)
        l->buf[l->n++] = '}';
    l->buf[l->n++] = '\n';
    /* stderr may be a pipe or journald's socket: one write, retried on EINTR */
    ssize_t w;
    do
        w = write(STDERR_FILENO, l->buf, l->n);
    while (w < 0 && errno == EINTR);
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
